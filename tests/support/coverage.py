"""What the exactly-once and fault tests covered in this run (printed at the end)."""

from __future__ import annotations

from collections import Counter

STATS: Counter[str] = Counter()
