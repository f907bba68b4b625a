"""Input hashing: this project against what a user would otherwise reach for.

Each row is ns per call (best of several repeats, so noise only ever makes us look
slower); ratios are measured in the same run. Run with `make bench`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import canonicaljson
import orjson
import rfc8785
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import dar
import payloads


def candidates(value: Any) -> dict[str, Callable[[], object]]:
    canonical = dar.canonical_json(value)
    return {
        "dar.input_hash": lambda: dar.input_hash(value),
        "json.dumps(sort_keys)+sha256": lambda: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
        "orjson(OPT_SORT_KEYS)+sha256": lambda: hashlib.sha256(
            orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
        "rfc8785+sha256": lambda: hashlib.sha256(rfc8785.dumps(value)).hexdigest(),
        "canonicaljson+sha256": lambda: hashlib.sha256(
            canonicaljson.encode_canonical_json(value)
        ).hexdigest(),
        "floor: sha256(canonical bytes)": lambda: hashlib.sha256(canonical).hexdigest(),
    }


def ns_per_call(fn: Callable[[], object], budget_s: float = 0.2) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * budget_s / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def main() -> None:
    console = Console()
    shapes = {
        "3-key call": payloads.three_key_call(),
        "~1 KB order": payloads.order(),
        "float-heavy message": payloads.float_heavy(),
        "~400 KB batch": payloads.batch(),
    }
    results: dict[str, dict[str, float]] = {}
    with console.status("timing…"):
        for shape, value in shapes.items():
            size = len(dar.canonical_json(value))
            results[f"{shape} ({size:,} B)"] = {
                name: ns_per_call(fn) for name, fn in candidates(value).items()
            }
    names = list(next(iter(results.values())))
    table = Table(title="ns per call (lower is better); ×: how many times slower than dar")
    table.add_column("payload")
    for name in names:
        table.add_column(name, justify="right")
    for shape, row in results.items():
        ours = row["dar.input_hash"]
        cells = [f"{ours:,.0f}"] + [f"{row[n]:,.0f} ({row[n] / ours:.2f}×)" for n in names[1:]]
        table.add_row(shape, *cells)
    console.print(table)


if __name__ == "__main__":
    main()
