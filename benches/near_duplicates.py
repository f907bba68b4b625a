"""Near-duplicate detection on the labelled set: cosine alone against the full detector.

Reads tests/data/near_duplicates.jsonl (pairs of messages an agent sends, in English and
Spanish, labelled duplicate or distinct, split into dev and test), embeds every text with
the default offline embedder (`dar.embedding.default_embedder`), and prints:

- the embedder's load time and its cost per text, in a batch of 1 and of 32, and the cost
  of one `judge` of a pair whose vectors are known;
- precision and recall of cosine similarity alone at several thresholds, per split;
- the same for the full detector (`dar.core.nearness.judge`), and the threshold the dev
  split chooses (`choose`): `DEFAULT_THRESHOLD` is set from it;
- at `DEFAULT_THRESHOLD`, the figures per split, per language, per kind, and the recall of
  distinct pairs' rejection per reason they are distinct (``hard``).

Run: ``PYTHONPATH=python python benches/near_duplicates.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dar.core.nearness import DEFAULT_THRESHOLD, cosine, judge
from dar.embedding import default_embedder, embed

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "near_duplicates.jsonl"
TARGET_PRECISION = 0.97  # a margin above the 0.95 the test pins, for the held-out split
THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

Row = dict[str, str]
Vectors = dict[str, tuple[float, ...]]
Judge = Callable[[Row, float], bool]


@dataclass(frozen=True)
class Score:
    """Precision and recall of the "duplicate" answers over some pairs."""

    pairs: int
    true_pos: int
    false_pos: int
    false_neg: int

    @property
    def precision(self) -> float:
        said = self.true_pos + self.false_pos
        return self.true_pos / said if said else 1.0

    @property
    def recall(self) -> float:
        real = self.true_pos + self.false_neg
        return self.true_pos / real if real else 1.0

    def __str__(self) -> str:
        return (
            f"{self.pairs:4d} pairs  precision {self.precision:.3f}  recall {self.recall:.3f}"
            f"  (tp {self.true_pos}, fp {self.false_pos}, fn {self.false_neg})"
        )


def load() -> list[Row]:
    with DATA.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def score(rows: Iterable[Row], says: Judge, threshold: float) -> Score:
    tp = fp = fn = n = 0
    for row in rows:
        n += 1
        duplicate, said = row["label"] == "duplicate", says(row, threshold)
        tp += duplicate and said
        fp += said and not duplicate
        fn += duplicate and not said
    return Score(n, tp, fp, fn)


def detectors(vectors: Vectors) -> dict[str, Judge]:
    def by_cosine(row: Row, threshold: float) -> bool:
        return cosine(vectors[row["a"]], vectors[row["b"]]) >= threshold

    def by_detector(row: Row, threshold: float) -> bool:
        a, b = row["a"], row["b"]
        return judge(a, vectors[a], b, vectors[b], threshold).duplicate

    return {"cosine alone": by_cosine, "detector": by_detector}


def timings(texts: Sequence[str]) -> None:
    started = time.perf_counter()
    embedder = default_embedder()
    print(f"default embedder: loaded in {time.perf_counter() - started:.2f} s")
    for size in (1, 32):
        batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)][:64]
        per_text = []
        for _ in range(3):
            started = time.perf_counter()
            for batch in batches:
                embed(embedder, batch)
            per_text.append((time.perf_counter() - started) / (len(batches) * size))
        print(f"  batch of {size:2d}: {min(per_text) * 1e6:7.1f} µs per text (best of 3)")


def choose(rows: list[Row], says: Judge) -> float:
    """The lowest threshold of `THRESHOLDS` at which the dev split's precision is at least
    `TARGET_PRECISION`, there and at every higher one (precision need not rise with the
    threshold; a dip above the choice would mean the choice is luck)."""
    dev = [r for r in rows if r["split"] == "dev"]
    chosen = 1.0
    for threshold in sorted(THRESHOLDS, reverse=True):
        if score(dev, says, threshold).precision < TARGET_PRECISION:
            break
        chosen = threshold
    return chosen


def breakdown(rows: list[Row], says: Judge, field: str) -> None:
    for value in sorted({r[field] or "-" for r in rows}):
        chosen = [r for r in rows if (r[field] or "-") == value]
        print(f"  {field} {value:16s} {score(chosen, says, DEFAULT_THRESHOLD)}")


def main() -> None:
    rows = load()
    texts = sorted({row[side] for row in rows for side in ("a", "b")})
    timings(texts)
    vectors = dict(zip(texts, embed(default_embedder(), texts), strict=True))
    lengths = [len(t) for t in texts]
    print(f"{len(rows)} pairs, {len(texts)} texts, median {statistics.median(lengths)} chars")
    found = detectors(vectors)
    started = time.perf_counter()
    for row in rows:
        found["detector"](row, DEFAULT_THRESHOLD)
    per_pair = (time.perf_counter() - started) / len(rows)
    print(f"judge (cosine and rules, vectors given): {per_pair * 1e6:.1f} µs per pair")
    for name, says in found.items():
        print(f"\n{name}: the dev split would choose {choose(rows, says):.2f}")
        for threshold in THRESHOLDS:
            for split in ("dev", "test"):
                chosen = [r for r in rows if r["split"] == split]
                print(f"  >= {threshold:.2f} {split:4s} {score(chosen, says, threshold)}")
    says = found["detector"]
    print(f"\ndetector at DEFAULT_THRESHOLD = {DEFAULT_THRESHOLD:.2f}")
    print(f"  all pairs              {score(rows, says, DEFAULT_THRESHOLD)}")
    for field in ("split", "lang", "kind"):
        breakdown(rows, says, field)
    print("  distinct pairs held apart, per reason (recall of 'distinct'):")
    for reason in sorted({r["hard"] for r in rows if r["hard"]}):
        chosen = [r for r in rows if r["hard"] == reason]
        kept = sum(not says(r, DEFAULT_THRESHOLD) for r in chosen)
        apart = [r for r in chosen if cosine(vectors[r["a"]], vectors[r["b"]]) >= DEFAULT_THRESHOLD]
        print(
            f"    {reason:14s} {kept:3d}/{len(chosen):3d} held apart"
            f"  (cosine alone would hold {len(apart)} as duplicates)"
        )


if __name__ == "__main__":
    main()
