"""Postgres LISTEN/NOTIFY: wake whoever waits on a key as soon as its claim changes.

One connection and one daemon thread per store. Waiters register a ``wake`` callback (a
`threading.Event.set` for a thread, a `loop.call_soon_threadsafe` for a coroutine), so the
sync and async runtimes share it. If it fails, waiters still wake at their timeout
(polling), so correctness never depends on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from psycopg import sql as pgsql


class Listener:
    """Listens on ``channel``; each notification's payload is a key."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo, self.channel = conninfo, channel
        self._wakers: dict[str, set[Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dar-listen", daemon=True)
        self._thread.start()

    def subscribe(self, key: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on the next notifications for ``key``; returns the unsubscribe."""
        with self._lock:
            self._wakers.setdefault(key, set()).add(wake)

        def unsubscribe() -> None:
            with self._lock:
                found = self._wakers.get(key)
                if found is not None:
                    found.discard(wake)
                    if not found:
                        del self._wakers[key]

        return unsubscribe

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel)))
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            with self._lock:
                                wakers = list(self._wakers.get(note.payload, ()))
                            for wake in wakers:
                                try:
                                    wake()
                                except Exception:  # e.g. its event loop has closed
                                    continue
            except Exception:
                self._stopped.wait(0.5)  # reconnect; waiters poll meanwhile

    def stop(self) -> None:
        self._stopped.set()
