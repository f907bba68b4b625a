"""What an existing claim means for this call: the one judgement every store and the core
share, as a pure function (table-tested in `tests/core/`)."""

from __future__ import annotations

import enum

from dar.core.states import ClaimState
from dar.records import Claim


class Verdict(enum.Enum):
    """How a call proceeds, given the claim of its key."""

    TAKE = "take"  # no live claim: take the key (insert, or replace the claim's version)
    HIT = "hit"  # done, unexpired, same input: answer from the record
    CONFLICT = "conflict"  # a live claim for another input holds the key
    KEPT_FAILURE = "kept_failure"  # failed, unexpired, and the tool keeps failures
    INDETERMINATE = "indeterminate"  # unknown, and no reconcile: an operator decides
    RUNNING = "running"  # another worker is running it: wait
    EXPIRED = "expired"  # its worker died mid-effect, no reconcile: now indeterminate
    RECONCILE = "reconcile"  # unknown, or its worker died mid-effect: take it, ask reconcile


def classify(
    claim: Claim | None,
    now: float,
    input_hash: str,
    *,
    blind_retry_safe: bool = True,
    can_reconcile: bool = False,
) -> Verdict:
    """Judge ``claim`` for a call with ``input_hash`` at ``now``.

    ``blind_retry_safe``: the tool's effect may simply run again after its worker died
    (``read``, ``mutate-local``); otherwise an expired lease is ``RECONCILE`` when
    ``can_reconcile``, else ``EXPIRED``. An ``indeterminate`` claim is ``RECONCILE`` when
    ``can_reconcile``, whatever the effect. A store needs only the defaults: it asks one
    question, whether the claim is a ``HIT``.
    """
    if claim is None:
        return Verdict.TAKE
    state = claim.state  # compared with the str enum's members: no enum look-up per call
    fresh = claim.expires_at is None or claim.expires_at > now
    same = claim.input_hash == input_hash
    if state == ClaimState.DONE and fresh and same:
        return Verdict.HIT
    live = state in (ClaimState.RUNNING, ClaimState.INDETERMINATE) or (
        state in (ClaimState.DONE, ClaimState.FAILED) and fresh
    )
    if live and not same:
        return Verdict.CONFLICT
    if state == ClaimState.FAILED and fresh:
        return Verdict.KEPT_FAILURE
    if state == ClaimState.INDETERMINATE:
        # Unknown (a crash, a cancellation, a timeout): the tool's ``reconcile`` is asked
        # by the next call, else an operator decides.
        return Verdict.RECONCILE if can_reconcile else Verdict.INDETERMINATE
    if state == ClaimState.RUNNING:
        if claim.lease_until is not None and claim.lease_until > now:
            return Verdict.RUNNING
        if not blind_retry_safe:
            return Verdict.RECONCILE if can_reconcile else Verdict.EXPIRED
    return Verdict.TAKE


def is_hit(claim: Claim | None, input_hash: str, now: float) -> bool:
    """Does ``claim`` answer the call from the record? (A fresh ``done`` claim never changes
    under a reader — only expired or released claims are taken again — so a store needs no
    transaction around this check.)"""
    return classify(claim, now, input_hash) is Verdict.HIT
