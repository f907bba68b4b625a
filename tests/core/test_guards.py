"""The guards' decisions, pure: which earlier shares count, budgets' numbers, Similar's
verdicts, and windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dar import Budget, ConfigurationError, Similar
from dar.core import guards
from dar.core.ops import GuardRow, GuardScan
from dar.guards import window_seconds

NOW = 1_800_000_000.0
LEASE = 300.0


def share(
    amount: float = 1.0,
    *,
    state: str = guards.USED,
    key: str = "k-earlier",
    held_until: float | None = None,
    claim_state: str | None = None,
    text: str | None = None,
    vector: tuple[float, ...] | None = None,
) -> GuardRow:
    return GuardRow(
        "r", "refund", "g", "scope", amount, text, vector, key, "e-earlier", NOW - 60,
        state, held_until, claim_state,
    )  # fmt: skip


def pending(
    guard: Budget | Similar, amount: float = 0.0, text: str | None = None, key: str = "k-now"
) -> guards.Pending:
    vector = None if text is None else (1.0, 0.0)
    return guards.Pending(
        "refund", key, "e-now", NOW, LEASE, (guard,), (GuardScan("refund", guard.name, "s", 0),),
        (amount,), (text,), (vector,), ("customer_id C-1",),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("row", "counted"),
    [
        (share(), True),  # executed
        (share(state=guards.RELEASED), False),  # failed, refused, lost its key
        (share(state=guards.HELD, held_until=NOW + 1), True),  # about to take its key
        (share(state=guards.HELD, held_until=None), True),  # awaiting a person, indeterminate
        (share(state=guards.HELD, held_until=NOW - 1), False),  # crashed before its claim
        (share(state=guards.HELD, held_until=NOW - 1, claim_state="running"), True),
        (share(state=guards.HELD, held_until=NOW - 1, claim_state="indeterminate"), True),
        (share(state=guards.HELD, held_until=NOW - 1, claim_state="failed"), False),
        (share(state=guards.HELD, held_until=None, key="k-now"), False),  # its own, waiting
        (share(state=guards.USED, key="k-now"), True),  # the same input, run before
    ],
)
def test_which_earlier_shares_count(row: GuardRow, counted: bool) -> None:
    assert guards.counts(row, NOW, "k-now") is counted


def test_a_budget_that_fits_writes_a_held_share_for_a_lease() -> None:
    budget = Budget(500, of="amount", per=("customer_id",), within="24h")
    decision = guards.decide(pending(budget, 100), [[share(400)]])
    assert decision.refusal is None
    (row,) = decision.rows
    assert (row.amount, row.state, row.held_until, row.idempotency_key) == (
        100,
        guards.HELD,
        NOW + LEASE,
        "k-now",
    )


def test_a_budget_refusal_gives_the_numbers() -> None:
    budget = Budget(500, of="amount", per=("customer_id",), within="24h")
    decision = guards.decide(pending(budget, 100), [[share(200), share(250)]])
    assert decision.rows == ()
    assert decision.refusal == (
        "Budget(500 of amount per customer_id in 24h)",
        "reject",
        "450 of 500 used in the last 24h for customer_id C-1; this refund needs 100 "
        "(at most 50 is left)",
    )


def test_a_count_budget_says_calls() -> None:
    budget = Budget(2, per=("customer_id",), within="1h")
    decision = guards.decide(pending(budget, 1), [[share(), share()]])
    assert decision.refusal is not None
    assert (
        decision.refusal[2]
        == "2 of 2 calls used in the last 1h for customer_id C-1; this refund needs 1"
    )


def test_similar_holds_rejects_or_flags_a_repeat_and_passes_once_approved() -> None:
    earlier = share(text="Your order ORD-1 ships tomorrow", vector=(1.0, 0.0))
    text = "Your order ORD-1 ships tomorrow!"
    for then in ("hold", "reject"):
        guard = Similar("message", within="10m", then=then)
        refusal = guards.decide(pending(guard, text=text), [[earlier]]).refusal
        assert refusal is not None and refusal[1] == then
        assert "'Your order ORD-1 ships tomorrow'" in refusal[2]
    flag = Similar("message", within="10m", then="flag")
    flagged = guards.decide(pending(flag, text=text), [[earlier]])
    assert flagged.refusal is None and flagged.rows and flagged.flags[0][0] == flag.name
    hold = Similar("message", within="10m")
    approved = guards.decide(
        replace(pending(hold, text=text), approved=frozenset({hold.name})), [[earlier]]
    )
    assert approved.refusal is None and approved.rows[0].text == text


def test_similar_tells_other_ids_apart() -> None:
    earlier = share(text="Your order ORD-1 ships tomorrow", vector=(1.0, 0.0))
    guard = Similar("message", within="10m")
    decision = guards.decide(pending(guard, text="Your order ORD-2 ships tomorrow"), [[earlier]])
    assert decision.refusal is None


def test_a_field_the_guard_cannot_read_is_named_by_path() -> None:
    with pytest.raises(guards.GuardInputError, match=r"at \$\.amount: .* needs a number"):
        guards.amount_of(Budget(5, of="amount", within="1h"), {"amount": "5"})
    with pytest.raises(guards.GuardInputError, match=r"at \$\.message: .* needs text"):
        guards.text_of(Similar("message", within="1h"), {"message": 5})


def test_scopes_differ_by_value_and_session_only_where_scoped() -> None:
    budget = Budget(5, per=("customer_id",), within="1h")
    a, label = guards.scope_of("refund", budget, {"customer_id": "C-1"}, "s-1")
    assert label == "customer_id C-1"
    assert a == guards.scope_of("refund", budget, {"customer_id": "C-1"}, "s-2")[0]
    assert a != guards.scope_of("refund", budget, {"customer_id": "C-2"}, "s-1")[0]
    similar = Similar("message", within="1h")
    b = guards.scope_of("send", similar, {}, "s-1")[0]
    assert b != guards.scope_of("send", similar, {}, "s-2")[0]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("24h", 86400), ("7d", 604800), (30, 30)]
)
def test_windows_read_as_durations(text: str | float, seconds: float) -> None:
    assert window_seconds(text, "Budget") == seconds


@pytest.mark.parametrize("bad", ["", "10", "ten minutes", "-1h", 0, True])
def test_a_bad_window_is_named(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="must be a positive duration"):
        window_seconds(bad, "Budget")  # type: ignore[arg-type]


def test_a_stored_vector_reads_back_as_float32() -> None:
    stored = guards.vector_text((0.5, -1.25, 0.1))
    assert stored is not None and len(stored) == 16  # 12 bytes in base64
    back = guards.vector_from(stored)
    assert back is not None and back[:2] == (0.5, -1.25) and abs(back[2] - 0.1) < 1e-7
