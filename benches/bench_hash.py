"""Input hashing: this project against what a user would otherwise reach for, and the floors.

Every timing of one run is interleaved: each round times every candidate once (a slice of
about `SLICE_S` seconds), and a candidate's figure is its best round, so noise only ever
makes a candidate look slower and drifts of the machine hit all candidates alike. Ratios are
computed from figures of the same run. Run with `make bench` (or `DAR_BENCH_ROUNDS=3` for a
quick look).

Rows:
- objects → hash: `dar.input_hash` against orjson(OPT_SORT_KEYS)+sha256 (and json / rfc8785 /
  canonicaljson), with two floors: hashlib.sha256 of the canonical bytes alone, and
  orjson.dumps without sorting + sha256 (serialization at orjson speed plus the hash).
- text → hash: `dar.input_hash_from_text` against orjson loads+dumps(OPT_SORT_KEYS)+sha256.
- a batch of 10,000 ~1 KB texts: `dar.input_hashes_from_texts` on 1 thread and on every core.

`DAR_BENCH_BEFORE=path/to/_core.so` adds the compiled core of another commit as the
candidate "before", timed in the same rounds (benches/README.md says how to build one).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# sqlite-utils (imported by dar) imports numpy when it is installed (matplotlib brings it
# here), and OpenBLAS then starts a spinning thread per core: keep it off the 2 cores timed.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import canonicaljson
import orjson
import rfc8785
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import dar
import payloads


def load_before() -> Any:
    """The compiled core named by DAR_BENCH_BEFORE, loaded beside ours, or None."""
    path = os.environ.get("DAR_BENCH_BEFORE")
    if not path:
        return None
    loader = importlib.machinery.ExtensionFileLoader("dar._core", path)
    spec = importlib.util.spec_from_file_location("dar._core", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


BEFORE = load_before()
ROUNDS = int(os.environ.get("DAR_BENCH_ROUNDS", "25"))
SLICE_S = 0.02
SORT = orjson.OPT_SORT_KEYS

Fn = Callable[[], object]


def object_candidates(value: Any) -> dict[str, Fn]:
    canonical = dar.canonical_json(value)
    before = {"before": lambda: BEFORE.input_hash(value)} if BEFORE else {}
    return before | {
        "dar": lambda: dar.input_hash(value),
        "orjson": lambda: hashlib.sha256(orjson.dumps(value, option=SORT)).hexdigest(),
        "json": lambda: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
        "rfc8785": lambda: hashlib.sha256(rfc8785.dumps(value)).hexdigest(),
        "canonicaljson": lambda: hashlib.sha256(
            canonicaljson.encode_canonical_json(value)
        ).hexdigest(),
        "floor: sha256": lambda: hashlib.sha256(canonical).hexdigest(),
        "floor: orjson unsorted+sha256": lambda: hashlib.sha256(orjson.dumps(value)).hexdigest(),
    }


def text_candidates(text: str) -> dict[str, Fn]:
    canonical = dar.canonical_json_from_text(text)
    before = {"before": lambda: BEFORE.input_hash_from_text(text)} if BEFORE else {}
    return before | {
        "dar": lambda: dar.input_hash_from_text(text),
        "orjson": lambda: hashlib.sha256(orjson.dumps(orjson.loads(text), option=SORT)).hexdigest(),
        "floor: sha256": lambda: hashlib.sha256(canonical).hexdigest(),
        "floor: orjson unsorted+sha256": lambda: hashlib.sha256(
            orjson.dumps(orjson.loads(text))
        ).hexdigest(),
    }


def batch_candidates(texts: list[str]) -> dict[str, Fn]:
    cands: dict[str, Fn] = {
        "per-item loop": lambda: [dar.input_hash_from_text(t) for t in texts],
    }
    many = getattr(dar, "input_hashes_from_texts", None)
    if many is not None:
        cands["1 thread"] = lambda: many(texts, threads=1)
        cands["every core"] = lambda: many(texts)
    return cands


def calibrate(fn: Fn) -> int:
    """Calls per slice of about SLICE_S seconds."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if (elapsed := time.perf_counter() - start) >= SLICE_S / 4 or number > 1 << 24:
            return max(1, round(number * SLICE_S / max(elapsed, 1e-9)))
        number *= 4


def run(rows: dict[str, dict[str, Fn]]) -> dict[str, dict[str, float]]:
    """ns per call of every candidate of every row: best of ROUNDS interleaved rounds."""
    plan = [
        (row, name, fn, calibrate(fn)) for row, cands in rows.items() for name, fn in cands.items()
    ]
    best: dict[str, dict[str, float]] = {row: {} for row in rows}
    for _ in range(ROUNDS):
        for row, name, fn, number in plan:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            ns = (time.perf_counter() - start) / number * 1e9
            best[row][name] = min(ns, best[row].get(name, ns))
    return best


def main() -> None:
    console = Console(width=200)
    objects = {
        "3-key call": payloads.three_key_call(),
        "~1 KB order": payloads.order(),
        "float-heavy message": payloads.float_heavy(),
        "~400 KB batch": payloads.batch(),
    }
    texts = {
        "3-key call": json.dumps(payloads.three_key_call(), separators=(",", ":")),
        "~1 KB order": json.dumps(payloads.order(), ensure_ascii=False),
        "~10 KB orders": json.dumps([payloads.order(i) for i in range(10)], ensure_ascii=False),
        "~400 KB batch": json.dumps(payloads.batch(), ensure_ascii=False),
    }
    batch = [json.dumps(payloads.order(i), ensure_ascii=False) for i in range(10_000)]

    rows: dict[str, dict[str, Fn]] = {}
    for shape, value in objects.items():
        rows[f"objects: {shape} ({len(dar.canonical_json(value)):,} B)"] = object_candidates(value)
    for shape, text in texts.items():
        rows[f"text: {shape} ({len(text.encode()):,} B)"] = text_candidates(text)
    batch_row = f"batch of {len(batch):,} ~1 KB texts"
    rows[batch_row] = batch_candidates(batch)
    with console.status(f"timing, {ROUNDS} interleaved rounds…"):
        results = run(rows)

    table = Table(title="ns per call (best of interleaved rounds); ×: orjson time ÷ dar time")
    cols = ["path", "dar", "orjson", "dar vs orjson", "floor: sha256", "floor: orjson+sha256"]
    if BEFORE:
        cols[1:1] = ["before", "before vs orjson"]
    for col in cols:
        table.add_column(col, justify="left" if col == "path" else "right")
    for row, r in results.items():
        if row == batch_row:
            continue
        then = [f"{r['before']:,.0f}", f"{r['orjson'] / r['before']:.2f}×"] if BEFORE else []
        table.add_row(
            row,
            *then,
            f"{r['dar']:,.0f}",
            f"{r['orjson']:,.0f}",
            f"{r['orjson'] / r['dar']:.2f}×",
            f"{r['floor: sha256']:,.0f}",
            f"{r['floor: orjson unsorted+sha256']:,.0f}",
        )
    console.print(table)

    others = Table(title="objects: other libraries + sha256, ns per call (×: their time ÷ dar's)")
    others.add_column("path")
    for col in ["json", "rfc8785", "canonicaljson"]:
        others.add_column(col, justify="right")
    for row, r in results.items():
        if row.startswith("objects"):
            cells = [
                f"{r[c]:,.0f} ({r[c] / r['dar']:.1f}×)"
                for c in ["json", "rfc8785", "canonicaljson"]
            ]
            others.add_row(row, *cells)
    console.print(others)

    b = results[batch_row]
    lines = [f"{batch_row}, items/s:"]
    for name, ns in b.items():
        lines.append(f"  {name}: {len(batch) / ns * 1e9:,.0f}")
    if "every core" in b:
        gain = b["1 thread"] / b["every core"]
        lines.append(f"  every core ({os.cpu_count()} cores) vs 1 thread: {gain:.2f}×")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
