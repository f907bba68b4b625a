"""Grants: the rules' fingerprint that a grant is tied to sees the values a rule captured
and is stable."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from dar.core.grants import fingerprint
from dar.rules import Rule


def test_the_fingerprint_sees_captured_values_and_is_stable() -> None:
    def limit(n: int) -> Rule:
        return Rule(name="limit", check=lambda i, c: i["amount"] < n, applies_to="wire")

    assert fingerprint([limit(100)]) != fingerprint([limit(1_000_000)])
    assert fingerprint([limit(100)]) == fingerprint([limit(100)])

    class Check:
        def __call__(self, inp: dict[str, Any], ctx: Any) -> bool:
            return True

    one = Rule(name="c", check=Check(), applies_to="wire")
    assert fingerprint([one]) == fingerprint([dataclasses.replace(one, check=Check())])


def _limit(inp: dict[str, Any], ctx: Any, *, limit: int) -> bool:
    return bool(inp["amount"] <= limit)


class _Policy:
    def __init__(self, role: str) -> None:
        self.role = role

    def check(self, inp: dict[str, Any], ctx: Any) -> bool:
        return self.role == "director"


def test_the_fingerprint_covers_a_partials_arguments() -> None:
    # A grant once survived a rule change made through a functools.partial keyword.
    def cap(limit: int) -> Rule:
        return Rule(name="cap", check=functools.partial(_limit, limit=limit), applies_to="*")

    assert fingerprint([cap(100)]) != fingerprint([cap(1000)])
    assert fingerprint([cap(100)]) == fingerprint([cap(100)])


def test_the_fingerprint_covers_the_state_of_a_bound_methods_object() -> None:
    # ... and through the state of a bound method's object.
    def ruled(role: str) -> Rule:
        return Rule(name="policy", check=_Policy(role).check, applies_to="*")

    assert fingerprint([ruled("clerk")]) != fingerprint([ruled("director")])
    assert fingerprint([ruled("clerk")]) == fingerprint([ruled("clerk")])


def test_the_fingerprint_covers_module_constants_the_check_reads() -> None:
    namespace: dict[str, Any] = {"LIMIT": 100}
    exec("def check(inp, ctx):\n    return inp['amount'] <= LIMIT\n", namespace)
    before = fingerprint([Rule(name="cap", check=namespace["check"], applies_to="*")])
    namespace["LIMIT"] = 1000
    after = fingerprint([Rule(name="cap", check=namespace["check"], applies_to="*")])
    assert before != after
