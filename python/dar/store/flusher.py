"""The background thread that writes a store's buffered cache-hit rows.

Both sync stores buffer the rows of cache hits (they record no effect) and write them within
``hit_flush`` seconds; this is the one thread that keeps that promise for each of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Flusher:
    """Calls ``flush`` every ``interval`` seconds on a daemon thread, from the first
    ``start()`` until ``stop()``."""

    def __init__(self, flush: Callable[[], None], interval: float) -> None:
        self._flush = flush
        self.interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread; later calls do nothing. Safe from any thread."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="dar-hit-flush", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self._flush()
            except Exception:  # the rows stay buffered for the next try
                continue  # a fault must not end the thread: later hits would never flush

    def stop(self) -> None:
        """No more flushes after the one in progress, if any."""
        self._stopped.set()
