"""`classify`, table-tested: what each claim means for a call, with no database."""

from __future__ import annotations

import pytest

from dar.core.verdict import Verdict, classify, is_hit
from dar.records import Claim

NOW = 1_000.0
H = "hash-of-this-input"


def claim(
    state: str, *, h: str = H, lease: float | None = None, expires: float | None = None
) -> Claim:
    return Claim("k", "t", h, state, "w", lease, 3, 2, None, None, None, expires, None)


# (claim, blind_retry_safe, can_reconcile) -> verdict
TABLE = [
    ("no claim", None, True, False, Verdict.TAKE),
    ("done, same input", claim("done"), True, False, Verdict.HIT),
    ("done, same input, window open", claim("done", expires=NOW + 1), True, False, Verdict.HIT),
    ("done, window closed", claim("done", expires=NOW), True, False, Verdict.TAKE),
    (
        "done, window closed, other input",
        claim("done", h="x", expires=NOW - 5),
        True,
        False,
        Verdict.TAKE,
    ),
    ("done, other input", claim("done", h="x"), True, False, Verdict.CONFLICT),
    ("failed kept, same input", claim("failed"), True, False, Verdict.KEPT_FAILURE),
    ("failed kept, other input", claim("failed", h="x"), True, False, Verdict.CONFLICT),
    ("failed kept, expired", claim("failed", expires=NOW - 1), True, False, Verdict.TAKE),
    ("released", claim("released"), True, False, Verdict.TAKE),
    ("released, other input", claim("released", h="x"), True, False, Verdict.TAKE),
    ("indeterminate", claim("indeterminate"), True, False, Verdict.INDETERMINATE),
    ("indeterminate, reconcile", claim("indeterminate"), False, True, Verdict.RECONCILE),
    ("indeterminate, local, reconcile", claim("indeterminate"), True, True, Verdict.RECONCILE),
    ("indeterminate, other input", claim("indeterminate", h="x"), True, False, Verdict.CONFLICT),
    ("running, lease live", claim("running", lease=NOW + 1), True, False, Verdict.RUNNING),
    ("running, other input", claim("running", h="x", lease=NOW + 1), True, False, Verdict.CONFLICT),
    ("running, lease over, local", claim("running", lease=NOW), True, False, Verdict.TAKE),
    ("running, lease over, external", claim("running", lease=NOW), False, False, Verdict.EXPIRED),
    ("running, lease over, reconcile", claim("running", lease=NOW), False, True, Verdict.RECONCILE),
    (
        "running, lease over, other input",
        claim("running", h="x", lease=NOW),
        False,
        True,
        Verdict.CONFLICT,
    ),
]


@pytest.mark.parametrize(
    ("case", "c", "blind", "reconcile", "expected"), TABLE, ids=[t[0] for t in TABLE]
)
def test_classify(
    case: str, c: Claim | None, blind: bool, reconcile: bool, expected: Verdict
) -> None:
    assert classify(c, NOW, H, blind_retry_safe=blind, can_reconcile=reconcile) is expected


def test_every_verdict_is_reachable() -> None:
    assert {row[-1] for row in TABLE} == set(Verdict)


def test_a_store_asks_only_whether_it_is_a_hit() -> None:
    for _case, c, _blind, _reconcile, expected in TABLE:
        assert is_hit(c, H, NOW) is (expected is Verdict.HIT)
