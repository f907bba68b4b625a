"""Event ids: unique across processes and machines, cheap enough for the hot path."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable


class _Ids:
    """A random per-process prefix and a counter, shaped as a UUID. Unique without drawing
    16 random bytes per id (two ids per call are on the hot path); a forked child draws a
    new prefix so it never repeats its parent's ids."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def __call__(self) -> str:
        h = self.prefix + format(next(self.counter), "016x")
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_id: Callable[[], str] = _Ids()
