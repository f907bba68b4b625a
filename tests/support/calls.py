"""Helpers of the runtime's tests: counted tools, a worker that dies holding a claim, waiting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dar import (
    Effect,
    Runtime,
    rule,
    tool,
)

MakeRuntime = Callable[..., Runtime]


class Calls:
    """Counts handler executions per input."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.count.values())


def make_tool(effect: Effect, calls: Calls, **kwargs: Any) -> Any:
    name = kwargs.pop("name", f"t_{effect.name.lower()}")

    @tool(name=name, effect=effect, **kwargs)
    def handler(x: Any = None, fail: bool = False) -> dict[str, Any]:
        calls.count[repr(x)] += 1
        if fail:
            raise RuntimeError(f"boom {x}")
        return {"x": x, "n": calls.count[repr(x)]}

    return handler


allow_all = rule(applies_to="*", name="allow_all")(lambda inp, ctx: True)


def abandon_claim(
    rt: Runtime, t: Any, inp: dict[str, Any], correlation_id: str | None = None
) -> None:
    """Take the claim as a worker would, then 'die' before the outcome is recorded."""
    from dar.core.ops import CallHandler

    die_at(rt, t, inp, CallHandler, correlation_id)


def die_at(
    rt: Runtime, t: Any, inp: dict[str, Any], stop: type, correlation_id: str | None = None
) -> None:
    """Run a call as a worker would, and 'die' when it reaches an operation of type ``stop``
    (`dar.core.ops.CallHandler`: claimed, its outcome never recorded; `dar.core.ops.Take`:
    after its guards' shares, before its claim)."""
    from dar.core.decide import CallSpec, decide_call

    spec = CallSpec(
        tool=t,
        input=inp,
        rules=rt.rules,
        owner="dead-worker",
        clock=rt.clock,
        wait=0,
        events_reader=rt.events,
        correlation_id=correlation_id,
    )
    gen = decide_call(spec)
    op = next(gen)
    while not isinstance(op, stop):
        op = gen.send(rt._run(op))
    gen.close()


def statuses(rt: Runtime, **filters: Any) -> list[str]:
    return [e.status for e in rt.events(**filters)]


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
