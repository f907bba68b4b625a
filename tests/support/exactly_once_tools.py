"""The tools of the exactly-once state machine, importable by crash-worker processes.

A handler records each run as a line in a file named after its effect id, so runs are
counted across processes. Crash points are reached through test-only hooks: the handler
kills its own process before or after its effect, and a worker's store `finish` kills it
after the handler returned but before the outcome is recorded.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dar import Allow, Deny, Effect, Reconciled, rule, tool
from tests.support.model import ToolSpec, effect_id
from tests.support.runtimes import make as make_runtime

SPECS = {
    "t_read": ToolSpec("t_read", Effect.READ, None, 30),
    "t_local": ToolSpec("t_local", Effect.MUTATE_LOCAL, 100, 30),
    "t_ext": ToolSpec("t_ext", Effect.MUTATE_EXTERNAL, None, 30, reconciles=True),
    "t_irr": ToolSpec("t_irr", Effect.IRREVERSIBLE, None, 30),
}

allow_irreversible = rule(applies_to=Effect.IRREVERSIBLE, name="irreversible_allowed")(
    lambda inp, ctx: Allow()
)

POINTS = ("after_claim", "in_handler", "before_outcome")


def record_run(marks: Path, eid: str) -> int:
    """Append one line for this run; return the run's number."""
    path = marks / eid
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


def count_runs(marks: Path, eid: str) -> int:
    path = marks / eid
    return len(path.read_text().splitlines()) if path.exists() else 0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def build_tools(
    marks: Path,
    *,
    crash_at: str | None = None,
    fail_next: Callable[[], bool] = lambda: False,
    reconcile_answer: Callable[[], Any] = lambda: None,
    overlap: Callable[[], float] = lambda: 0.0,
) -> dict[str, Any]:
    tools = {}
    for spec in SPECS.values():

        def handler(v: int, _name: str = spec.name) -> dict[str, Any]:
            if crash_at == "after_claim":
                die()
            run = record_run(marks, effect_id(_name, v))
            if crash_at == "in_handler":
                die()
            time.sleep(overlap())
            if fail_next():
                raise RuntimeError(f"{_name} failed on run {run}")
            return {"tool": _name, "v": v, "run": run}

        def reconcile(inp: dict[str, Any]) -> Reconciled:
            answer = reconcile_answer()
            if answer == "raise":
                raise ConnectionError("courier API unreachable")
            return Reconciled(False) if answer is None else Reconciled(True, answer)

        tools[spec.name] = tool(
            name=spec.name,
            effect=spec.effect,
            window=spec.window,
            lease=spec.lease,
            reconcile=reconcile if spec.reconciles else None,
        )(handler)
    return tools


def crash_call(
    url: str, marks: str, name: str, v: int, key: str | None, point: str, now: float, kind: str
) -> None:
    """Worker process: claim a call and die at ``point`` (never returns normally)."""
    rt = make_runtime(kind, url, clock=lambda: now, wait=0, rules=[allow_irreversible])
    if point == "before_outcome":
        rt.store.finish = lambda op: die()
    tools = build_tools(Path(marks), crash_at=point)
    rt.execute(tools[name], {"v": v}, key=key)
    raise SystemExit(f"the call returned instead of crashing at {point}")


def deny_rule(name: str, v: int) -> Any:
    """A rule on one tool that refuses one input value."""

    def check(inp: dict[str, Any], ctx: Any, _v: int = v) -> Deny | bool:
        return Deny(f"v={_v} refused") if inp["v"] == _v else True

    return rule(applies_to=name, name=f"deny_{name}_{v}")(check)


def burst_call(
    url: str,
    marks: str,
    name: str,
    v: int,
    now: float,
    barrier: Any,
    denied: list[tuple[str, int]],
    irreversible_rule: bool,
    kind: str,
) -> tuple[str, Any]:
    """Worker process of a concurrent burst: wait at the barrier, then make the call."""
    rules = [deny_rule(t, d) for t, d in denied]
    if irreversible_rule:
        rules.append(allow_irreversible)
    rt = make_runtime(kind, url, clock=lambda: now, wait=30, rules=rules)
    tools = build_tools(Path(marks), overlap=lambda: 0.05)
    barrier.wait()
    res = rt.execute(tools[name], {"v": v})
    rt.close()
    return res.status.value, res.output
