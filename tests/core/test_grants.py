"""Grants: the rules' fingerprint that a grant is tied to sees the values a rule captured
and is stable."""

from __future__ import annotations

import dataclasses
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
