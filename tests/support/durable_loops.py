"""Durable runs of an SDK's agent loop, for the integration tests: a shop with a read, an
effect, a refusal and an order a person must approve, the model's script, a crash between
two model turns, and a harness that starts and resumes runs on either runtime.

Each SDK's test runs its loop (the SDK's durable model, dar's tools) to the end, runs it
again with a crash after some model turns and resumes it, and suspends it on the order that
waits for a person."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dar import Allow, AsyncRuntime, Deny, Effect, NeedsApproval, Runtime, rule, tool
from dar.demo.scripted_model import ToolCall, Turn
from dar.records import RunRecord, RunResult
from dar.rules import Rule
from dar.tools import Tool

READ = ToolCall("get_price", '{"item": "tea"}')
ORDER = ToolCall("place_order", '{"item": "tea", "quantity": 2}')
REFUSED = ToolCall("place_order", '{"item": "gold", "quantity": 50}')  # the rule refuses it
CAVIAR = ToolCall("place_order", '{"item": "caviar", "quantity": 1}')  # a person decides
COFFEE = ToolCall("place_order", '{"item": "coffee", "quantity": 1}')
ANSWER = "Ordered 2 tea at 3 gold each; the gold was refused."
APPROVED = "Ordered tea, and caviar and coffee once the caviar was approved."
REFUSAL = "orders above 10 units need a human"
WAITS = "caviar needs a manager"

#: A read; an effect and a refusal in one turn (the SDK runs them concurrently); the answer.
SCRIPT: list[Turn] = [[READ], [ORDER, REFUSED], ANSWER]
#: The same, one call a turn (for a loop that runs a turn's calls in threads).
ONE_A_TURN: list[Turn] = [[READ], [ORDER], [REFUSED], ANSWER]
#: The caviar waits for a person: the tea before it in its turn runs, the coffee after not.
APPROVAL: list[Turn] = [[READ], [ORDER, CAVIAR, COFFEE], APPROVED]
APPROVAL_ONE_A_TURN: list[Turn] = [[READ], [ORDER], [CAVIAR], [COFFEE], APPROVED]

#: What the handlers ran in one whole conversation of `SCRIPT` (the refusal runs nothing).
RAN = Counter({"price tea": 1, "order 2 tea": 1})
#: ... and of `APPROVAL`, before and after the approval.
RAN_BEFORE_APPROVAL = Counter({"price tea": 1, "order 2 tea": 1})
RAN_APPROVED = RAN_BEFORE_APPROVAL + Counter({"order 1 caviar": 1, "order 1 coffee": 1})

#: Seconds a run's worker holds it in these tests: short, so a resume may take a crashed run.
LEASE = 0.3


@dataclass
class Shop:
    """The tools and rules, and how often each handler really ran."""

    ran: Counter[str]
    tools: list[Tool[Any]]
    rules: list[Rule]


def make_shop() -> Shop:
    ran: Counter[str] = Counter()

    @tool(effect=Effect.READ)
    def get_price(item: str) -> dict[str, Any]:
        """The price of one unit.

        Args:
            item: What to price.
        """
        ran[f"price {item}"] += 1
        return {"item": item, "price": 3}

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def place_order(item: str, quantity: int) -> dict[str, Any]:
        """Order goods from the supplier.

        Args:
            item: What to order.
            quantity: How many units.
        """
        ran[f"order {quantity} {item}"] += 1
        return {"order": f"{quantity} x {item}", "status": "placed"}

    @rule(applies_to="place_order")
    def orders_checked(inp: dict[str, Any], ctx: Any) -> Allow | Deny | NeedsApproval:
        if inp["item"] == "caviar":
            return NeedsApproval(WAITS)
        return Deny(REFUSAL) if inp["quantity"] > 10 else Allow()

    return Shop(ran, [get_price, place_order], [orders_checked])


@dataclass
class Crash:
    """The process dies between two model turns: the first time the model is about to be
    asked for turn ``at`` (from 0), KeyboardInterrupt. ``asked`` counts the turns the model
    was really asked, across the crash and the resume."""

    at: int | None = None
    asked: int = 0
    crashed: bool = False

    def before_asking(self) -> int:
        """Call where the model is asked; returns the turn's number."""
        if not self.crashed and self.asked == self.at:
            self.crashed = True
            raise KeyboardInterrupt
        self.asked += 1
        return self.asked - 1


@dataclass
class Harness:
    """Start and resume runs on a ``sync`` (`Runtime`) or ``async`` (`AsyncRuntime`) runtime
    over one database file, a runtime of its own each time, as a new process would. The
    agent's loop reads the runtime that drives it from ``rt``."""

    kind: str
    db: str
    shop: Shop = field(default_factory=make_shop)
    rt: Any = None

    def start(self, agent: Callable[..., Any], session_id: str, *args: Any) -> RunResult:
        if self.kind == "sync":
            with Runtime(self.db, tools=self.shop.tools, rules=self.shop.rules) as rt:
                self.rt = rt
                return rt.start(agent, session_id, *args, lease=LEASE)

        async def main() -> RunResult:
            async with AsyncRuntime(self.db, tools=self.shop.tools, rules=self.shop.rules) as rt:
                self.rt = rt
                return await rt.start(agent, session_id, *args, lease=LEASE)

        return asyncio.run(main())

    def resume(self, approve: str | None = None) -> list[RunResult]:
        """Approve ``approve`` (an approval id) if given, then resume the runs that are due."""
        if self.kind == "sync":
            with Runtime(self.db, tools=self.shop.tools, rules=self.shop.rules) as rt:
                self.rt = rt
                if approve is not None:
                    rt.approve(approve, by="manager")
                return rt.resume(lease=LEASE)

        async def main() -> list[RunResult]:
            async with AsyncRuntime(self.db, tools=self.shop.tools, rules=self.shop.rules) as rt:
                self.rt = rt
                if approve is not None:
                    await rt.approve(approve, by="manager")
                return await rt.resume(lease=LEASE)

        return asyncio.run(main())

    def run(self, session_id: str) -> RunRecord:
        with Runtime(self.db) as rt:
            (found,) = [r for r in rt.runs() if r.session_id == session_id]
            return found

    def steps(self, session_id: str) -> list[tuple[str, str]]:
        """The run's journal: ``(kind, name)`` of each step, in order."""
        with Runtime(self.db) as rt:
            rows = [e for e in rt.events(correlation_id=session_id) if e.status == "run_step"]
        return [(e.effect, e.tool_name) for e in sorted(rows, key=lambda e: e.attempt or 0)]


def start_and_crash(h: Harness, agent: Callable[..., Any], session_id: str) -> None:
    """Start a run that crashes (KeyboardInterrupt out of ``rt.start``), and wait out its
    dead worker's lease."""
    try:
        h.start(agent, session_id, "order tea")
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the run did not crash")
    assert h.run(session_id).state == "running"  # its worker died holding it
    time.sleep(LEASE + 0.05)


def crash_and_resume(h: Harness, agent: Callable[..., Any], session_id: str) -> RunResult:
    """`start_and_crash`, then resume the run: what the resume answered."""
    start_and_crash(h, agent, session_id)
    (resumed,) = h.resume()
    return resumed


def check_whole_and_crashed(
    whole: tuple[Harness, Crash], crashed: tuple[Harness, Crash], turns: int, answer: str = ANSWER
) -> None:
    """The uninterrupted run and the crashed one (resumed) ended alike: the model was asked
    each turn once, every effect ran once, and the resume asked nothing it had recorded.
    (Each on a database of its own: an effect's idempotency key is not the session's.)"""
    for h, crash in (whole, crashed):
        assert crash.asked == turns
        assert h.shop.ran == RAN
    h, crash = crashed
    assert crash.crashed
    record = h.run("crashed")
    assert record.state == "finished" and record.output is not None
    assert h.steps("crashed") == whole[0].steps("whole")
    # The tokens spent live, across the crash, are those of the uninterrupted run; those of
    # the turns the resume answered from the journal were saved.
    spent = whole[0].run("whole").tokens
    assert record.tokens == spent
    assert (record.tokens_saved > 0) == (spent > 0)
    assert answer in record.output
