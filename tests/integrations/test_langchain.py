"""dar.integrations.langchain against a real LangChain v1 agent (``create_agent``) driven by a
scripted chat model.

In one turn the model sends: a call, its duplicate with the members in another order, a
call a rule refuses, a wrong-typed argument and an unknown tool name; on the next turn it
records what it was told and ends. Each conversation runs twice on the same database and
thread, as a restarted process would replay it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool
from langchain_core.tools import tool as lc_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import Field, ValidationError

import dar
from dar import AsyncRuntime, Deny, Effect, NeedsApproval, Runtime, rule, tool
from dar.demo.scripted_model import Turn
from dar.integrations import langchain as dar_langchain
from dar.integrations.langchain import DarMiddleware
from dar.records import RunResult
from tests.support import durable_loops as loops
from tests.support.shop import missing_sdk_error

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


class Scripted(BaseChatModel):
    """A chat model that sends ``first`` (AIMessage tool calls), then, told the results,
    says "done". Every request it gets is kept, to see what the model was told."""

    first: list[dict[str, Any]]
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:
        self.bound.extend(tools)
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        if isinstance(messages[-1], ToolMessage):
            reply = AIMessage(content="done")
        else:
            reply = AIMessage(content="", tool_calls=list(self.first))
        return ChatResult(generations=[ChatGeneration(message=reply)])


def call(name: str, args: dict[str, Any], n: int) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"c{n}", "type": "tool_call"}


FIRST_TURN = [
    call("ship_order", {"order_id": "A", "courier": "fast"}, 1),
    call("ship_order", {"courier": "fast", "order_id": "A"}, 2),  # the same, reordered
    call("ship_order", {"order_id": "B", "courier": "slowpoke"}, 3),  # refused by the rule
    call("ship_order", {"order_id": 7, "courier": "fast"}, 4),  # wrong-typed
    call("note", {"text": "fragile"}, 5),
    call("launch_rocket", {"when": "now"}, 6),  # unknown: LangChain lets it through
]


def dar_tools(ran: Counter[str]) -> list[dar.Tool[Any]]:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    def ship_order(order_id: str, courier: str) -> dict[str, str]:
        """Hand an order to a courier."""
        ran[f"ship {order_id} {courier}"] += 1
        return {"order_id": order_id, "courier": courier, "tracking": f"T-{order_id}"}

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(text: str) -> str:
        """Write a note on the order file."""
        ran[f"note {text}"] += 1
        return "noted"

    return [ship_order, note]


@rule(applies_to=["ship_order"])
def courier_serves_zone(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    if inp.get("courier") == "slowpoke":
        return Deny("slowpoke does not serve this zone")
    return True


def told_after_tools(model: Scripted) -> list[dict[str, ToolMessage]]:
    """The tool messages the model read on each turn that followed its tool calls."""
    out = []
    for request in model.seen:
        if isinstance(request[-1], ToolMessage):
            out.append({m.tool_call_id: m for m in request if isinstance(m, ToolMessage)})
    return out


def check_told(answers: dict[str, ToolMessage], *, unknown_logged: bool = True) -> None:
    assert json.loads(str(answers["c1"].content))["tracking"] == "T-A"
    assert answers["c2"].content == answers["c1"].content
    assert answers["c1"].status == "success"
    refused = answers["c3"]
    assert refused.status == "error"
    assert "Refused by the rule courier_serves_zone" in str(refused.content)
    assert "slowpoke does not serve this zone" in str(refused.content)
    assert answers["c4"].status == "error" and "$.order_id" in str(answers["c4"].content)
    assert answers["c5"].content == '"noted"'
    unknown = answers["c6"]
    assert unknown.status == "error"
    if unknown_logged:
        assert "unknown tool 'launch_rocket'" in str(unknown.content)


def check_log(events: list[dar.Event], cid: str, ship_tool: str = "ship_order") -> None:
    assert events and all(e.correlation_id == cid for e in events)
    ships = [e for e in events if e.tool_name == ship_tool]
    finals = Counter(e.status for e in ships if e.status != "started")
    assert finals["executed"] == 1
    assert finals["rejected"] == 4  # the rule and the wrong type, in each run
    unknown = [e for e in events if e.tool_name == "launch_rocket"]
    assert [e.status for e in unknown] == ["rejected", "rejected"]


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


# --- tools(rt): dar's own tools in a LangChain agent -----------------------------------------


def test_tools_sync_two_runs_of_one_thread(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    model = Scripted(first=FIRST_TURN)
    url = f"sqlite:///{tmp_path}/a.db"
    with Runtime(url, tools=dar_tools(ran), rules=[courier_serves_zone]) as rt:
        agent = create_agent(
            model, dar_langchain.tools(rt), middleware=[DarMiddleware(rt)]
        )  # the middleware lets dar's own tools pass, and logs the unknown name
        for _ in range(2):
            out = agent.invoke({"messages": [("user", "ship A")]}, config("th-1"))
            assert out["messages"][-1].content == "done"
        assert ran == {"ship A fast": 1, "note fragile": 1}
        told = told_after_tools(model)
        assert len(told) == 2
        for answers in told:
            check_told(answers)
        check_log(rt.events(correlation_id="th-1"), "th-1")


def test_tools_async_runtime_concurrent_turn(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    model = Scripted(first=FIRST_TURN)

    async def main() -> list[dar.Event]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path}/a.db", tools=dar_tools(ran), rules=[courier_serves_zone]
        ) as rt:
            agent = create_agent(model, dar_langchain.tools(rt), middleware=[DarMiddleware(rt)])
            for _ in range(2):
                out = await agent.ainvoke({"messages": [("user", "ship A")]}, config("th-a"))
                assert out["messages"][-1].content == "done"
            return await rt.events(correlation_id="th-a")

    events = asyncio.run(main())
    assert ran == {"ship A fast": 1, "note fragile": 1}
    for answers in told_after_tools(model):
        check_told(answers)
    check_log(events, "th-a")


def test_tool_schema_and_direct_invoke(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    with Runtime(f"sqlite:///{tmp_path}/a.db", tools=dar_tools(ran)) as rt:
        ship = next(t for t in dar_langchain.tools(rt) if t.name == "ship_order")
        assert isinstance(ship, StructuredTool)
        assert ship.description == "Hand an order to a courier."
        assert ship.tool_call_schema["required"] == ["order_id", "courier"]  # type: ignore[index]
        with dar.session("direct"):
            first = ship.invoke({"order_id": "Z", "courier": "fast"})
            again = ship.invoke({"courier": "fast", "order_id": "Z"})
            wrong = ship.invoke({"order_id": 1, "courier": "fast"})
        assert first == again and json.loads(first)["tracking"] == "T-Z"
        assert "$.order_id" in wrong  # a refusal is text, never an exception
        assert ran == {"ship Z fast": 1}
        assert {e.status for e in rt.events(correlation_id="direct")} >= {"executed", "cached"}


# --- DarMiddleware: tools the agent owns, routed through dar ------------------------------


def agent_tools(ran: Counter[str]) -> list[Any]:
    @lc_tool
    def ship_parcel(order_id: str, courier: str) -> str:
        """Ship an order's parcel with a courier."""
        ran[f"ship {order_id} {courier}"] += 1
        return f"shipped {order_id} with {courier}"

    @lc_tool
    def wipe_inventory(warehouse: str) -> str:
        """Delete every item of a warehouse."""
        ran[f"wipe {warehouse}"] += 1
        return f"wiped {warehouse}"

    @lc_tool
    def note(text: str) -> str:
        """Write a note on the order file."""
        ran[f"note {text}"] += 1
        return "noted"

    return [ship_parcel, wipe_inventory, note]


MIDDLEWARE_TURN = [
    call("ship_parcel", {"order_id": "A", "courier": "fast"}, 1),
    call("ship_parcel", {"courier": "fast", "order_id": "A"}, 2),
    call("ship_parcel", {"order_id": "B", "courier": "slowpoke"}, 3),
    call("ship_parcel", {"order_id": ["x"], "courier": "fast"}, 4),  # the tool's own schema
    call("note", {"text": "fragile"}, 5),
    call("launch_rocket", {"when": "now"}, 6),
    call("wipe_inventory", {"warehouse": "north"}, 7),  # unmapped: irreversible, no rule
]

EFFECTS = {"note": "mutate-local", "ship_*": "mutate-external"}


@rule(applies_to="ship_parcel")
def parcel_courier(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return Deny("slowpoke does not serve this zone") if inp["courier"] == "slowpoke" else True


def check_middleware(model: Scripted, ran: Counter[str], events: list[dar.Event]) -> None:
    assert ran == {"ship A fast": 1, "note fragile": 1}
    told = told_after_tools(model)
    assert len(told) == 2
    for answers in told:
        # The tools' own text, as the agent without dar sends it (the first and a cached call).
        assert answers["c1"].content == answers["c2"].content == "shipped A with fast"
        assert "Refused by the rule parcel_courier" in str(answers["c3"].content)
        wrong = answers["c4"]  # checked against the tool's schema before the rule
        assert wrong.status == "error"
        assert "invalid arguments: $.order_id: expected string, got array" in str(wrong.content)
        assert answers["c5"].content == "noted"
        assert "unknown tool 'launch_rocket'" in str(answers["c6"].content)
        wipe = answers["c7"]
        assert wipe.status == "error" and "irreversible but no rule" in str(wipe.content)
    statuses = Counter((e.tool_name, e.status) for e in events)
    assert statuses[("ship_parcel", "executed")] == 1
    assert statuses[("ship_parcel", "rejected")] == 4  # the rule and the wrong type, each run
    assert statuses[("ship_parcel", "failed")] == 0
    assert statuses[("launch_rocket", "rejected")] == 2
    # Refused and logged, with the rule that fails closed for an undeclared effect.
    wiped = [(e.status, e.rule_name) for e in events if e.tool_name == "wipe_inventory"]
    assert wiped and set(wiped) == {("rejected", "dar:undeclared:wipe_inventory")}


def test_middleware_sync(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    model = Scripted(first=MIDDLEWARE_TURN)
    with Runtime(f"sqlite:///{tmp_path}/a.db", rules=[parcel_courier]) as rt:
        mw = DarMiddleware(rt, effects=EFFECTS)
        agent = create_agent(model, agent_tools(ran), middleware=[mw])
        for _ in range(2):
            out = agent.invoke({"messages": [("user", "ship")]}, config("th-mw"))
            assert out["messages"][-1].content == "done"
        check_middleware(model, ran, rt.events(correlation_id="th-mw"))


@pytest.mark.parametrize("kind", ["async-runtime", "sync-runtime"])
def test_middleware_async(tmp_path: Path, kind: str) -> None:
    ran: Counter[str] = Counter()
    model = Scripted(first=MIDDLEWARE_TURN)
    url = f"sqlite:///{tmp_path}/a.db"

    async def main() -> list[dar.Event]:
        rt: Runtime | AsyncRuntime
        rt = AsyncRuntime(url) if kind == "async-runtime" else Runtime(url)
        rt.add_rule(parcel_courier)
        agent = create_agent(
            model, agent_tools(ran), middleware=[DarMiddleware(rt, effects=EFFECTS)]
        )
        for _ in range(2):
            out = await agent.ainvoke({"messages": [("user", "ship")]}, config("th-amw"))
            assert out["messages"][-1].content == "done"
        if isinstance(rt, AsyncRuntime):
            events = await rt.events(correlation_id="th-amw")
            await rt.close()
            return events
        events = rt.events(correlation_id="th-amw")
        rt.close()
        return events

    check_middleware(model, ran, asyncio.run(main()))


def test_session_comes_before_the_thread(tmp_path: Path) -> None:
    model = Scripted(first=[call("note", {"text": "x"}, 1)])
    with Runtime(f"sqlite:///{tmp_path}/a.db") as rt:
        agent = create_agent(
            model, agent_tools(Counter()), middleware=[DarMiddleware(rt, effects=EFFECTS)]
        )
        with dar.session("from-session"):
            agent.invoke({"messages": [("user", "go")]}, config("th-ignored"))
        assert rt.events(correlation_id="from-session")
        assert not rt.events(correlation_id="th-ignored")


# --- DarMiddleware: the agent's own tools' arguments and results ----------------------------


def test_own_tools_reach_the_model_as_without_dar(tmp_path: Path) -> None:
    @lc_tool
    def quote(item: str) -> dict[str, Any]:
        """The price of an item."""
        return {"item": item, "price": 3.5, "note": "prix ttc"}

    @lc_tool
    def label(item: str) -> str:
        """A shelf label."""
        return f'{item}: "fresh"'

    turn = [call("quote", {"item": "tea"}, 1), call("label", {"item": "tea"}, 2)]
    plain = Scripted(first=turn)
    create_agent(plain, [quote, label]).invoke({"messages": [("user", "go")]})
    (without,) = told_after_tools(plain)
    assert json.loads(str(without["c1"].content))["price"] == 3.5
    routed = Scripted(first=turn)
    with Runtime(f"sqlite:///{tmp_path}/a.db") as rt:
        mw = DarMiddleware(rt, effects={"quote": "mutate-local", "label": "mutate-local"})
        agent = create_agent(routed, [quote, label], middleware=[mw])
        for _ in range(2):  # the second run of the thread answers from the record
            agent.invoke({"messages": [("user", "go")]}, config("th-own"))
        statuses = [e.status for e in rt.events(correlation_id="th-own")]
    assert statuses.count("executed") == 2 and statuses.count("cached") == 2
    for told in told_after_tools(routed):
        assert [told[c].content for c in ("c1", "c2")] == [without[c].content for c in ("c1", "c2")]
        assert {m.status for m in told.values()} == {"success"}


@pytest.mark.parametrize("schema", ["pydantic", "json-schema"])
def test_own_tool_arguments_are_checked_against_its_schema_before_the_rules(
    tmp_path: Path, schema: str
) -> None:
    judged: list[Any] = []

    @rule(applies_to="refund")
    def small_refunds(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
        judged.append(inp["amount"])
        return inp["amount"] < 100

    def refund(amount: float, customer: str) -> str:
        """Refund a customer."""
        return f"refunded {amount}"

    json_schema = {
        "type": "object",
        "properties": {"amount": {"type": "number"}, "customer": {"type": "string"}},
        "required": ["amount", "customer"],
    }
    own = StructuredTool.from_function(
        refund, args_schema=json_schema if schema != "pydantic" else None
    )
    owned = tool(effect=Effect.MUTATE_EXTERNAL)(refund)
    model = Scripted(first=[call("refund", {"amount": "lots", "customer": "C-1"}, 1)])
    with Runtime(f"sqlite:///{tmp_path}/a.db", rules=[small_refunds]) as rt:
        mw = DarMiddleware(rt, effects={"refund": "mutate-external"})
        create_agent(model, [own], middleware=[mw]).invoke(
            {"messages": [("user", "refund")]}, config("th-args")
        )
        (refused,) = [e for e in rt.events(correlation_id="th-args") if e.tool_name == "refund"]
        with Runtime(f"sqlite:///{tmp_path}/owned.db", tools=[owned], rules=[small_refunds]) as o:
            as_owned = o.call("refund", {"amount": "lots", "customer": "C-1"})
    (told,) = told_after_tools(model)
    reason = "invalid arguments: $.amount: expected number, got string"
    assert told["c1"].status == "error" and reason in str(told["c1"].content)
    assert told["c1"].content == as_owned.for_model().text
    assert (refused.status, refused.rejection_reason) == ("rejected", as_owned.reason)
    assert judged == []  # the rule never saw the misfit


# --- a call waiting for a person: LangChain's human-in-the-loop interruption -----------------


class Paying(BaseChatModel):
    """Per user message, one call of ``pay`` with the next arguments of ``script``; told
    the result, it says "done". Every request it gets is kept."""

    script: list[dict[str, Any]]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "paying"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Paying:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.seen.append(list(messages))
        if isinstance(messages[-1], ToolMessage):
            reply = AIMessage(content="done")
        else:
            asked = sum(isinstance(m, HumanMessage) for m in messages)
            reply = AIMessage(content="", tool_calls=[call("pay", self.script[asked - 1], asked)])
        return ChatResult(generations=[ChatGeneration(message=reply)])


@rule(applies_to="pay")
def a_person_pays(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return NeedsApproval("payments need a person")


def payer(paid: Counter[str], kind: str) -> Any:
    """``pay`` as a dar tool (``tools``) or as the agent's own tool (``middleware``)."""

    def pay(amount: float, to: str) -> dict[str, Any]:
        """Pay someone."""
        paid[f"{amount} to {to}"] += 1
        return {"paid": amount, "to": to}

    return tool(effect=Effect.MUTATE_EXTERNAL)(pay) if kind == "tools" else lc_tool(pay)


def hitl_agent(rt: Runtime | AsyncRuntime, kind: str, paid: Counter[str], model: Paying) -> Any:
    if kind == "tools":
        rt.add_tool(payer(paid, kind))
        given, middleware = dar_langchain.tools(rt), []
    else:
        given = [payer(paid, kind)]
        middleware = [DarMiddleware(rt, effects={"pay": "mutate-external"})]
    return create_agent(model, given, middleware=middleware, checkpointer=InMemorySaver())


def asked_about(out: dict[str, Any], args: dict[str, Any]) -> str:
    """The one interruption's request, as HumanInTheLoopMiddleware words it; its description."""
    (paused,) = out["__interrupt__"]
    assert set(paused.value) == {"action_requests", "review_configs"}
    (action,) = paused.value["action_requests"]
    assert set(action) == {"name", "args", "description"}
    assert (action["name"], action["args"]) == ("pay", args)
    allowed = ["approve", "edit", "reject"]
    assert paused.value["review_configs"] == [{"action_name": "pay", "allowed_decisions": allowed}]
    description: str = action["description"]
    assert "payments need a person" in description
    return description


@pytest.mark.parametrize("kind", ["tools", "middleware"])
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_approval_interrupts_the_agent_and_its_resume_decides(
    tmp_path: Path, kind: str, mode: str
) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    paid: Counter[str] = Counter()
    model = Paying(script=[{"amount": 5, "to": "bob"}, {"amount": 7, "to": "bob"}])

    async def conversation() -> None:
        rt = AsyncRuntime(url) if mode == "ainvoke" else Runtime(url)
        rt.add_rule(a_person_pays)
        agent = hitl_agent(rt, kind, paid, model)

        async def step(given: Any) -> dict[str, Any]:
            if mode == "ainvoke":
                out: dict[str, Any] = await agent.ainvoke(given, config("th-hitl"))
                return out
            return await asyncio.to_thread(agent.invoke, given, config("th-hitl"))

        first = asked_about(await step({"messages": [("user", "pay bob 5")]}), model.script[0])
        assert not paid
        approve = {"decisions": [{"type": "approve"}], "by": "alice"}
        done = await step(Command(resume=approve))
        assert "__interrupt__" not in done and done["messages"][-1].content == "done"
        assert paid == {"5.0 to bob": 1}
        told = model.seen[-1][-1]
        assert isinstance(told, ToolMessage) and json.loads(str(told.content))["paid"] == 5
        # The conversation's next run, other arguments: the grant does not cover them.
        second = asked_about(await step({"messages": [("user", "pay bob 7")]}), model.script[1])
        assert second != first and paid == {"5.0 to bob": 1}
        reject = {"decisions": [{"type": "reject", "message": "over budget"}], "by": "bob"}
        await step(Command(resume=reject))
        told = model.seen[-1][-1]
        assert isinstance(told, ToolMessage) and told.status == "error"
        assert "denied by bob: over budget" in str(told.content)
        assert paid == {"5.0 to bob": 1}
        if isinstance(rt, AsyncRuntime):
            await rt.close()
        else:
            rt.close()

    asyncio.run(conversation())
    with Runtime(url) as rt:
        decided = {(a.input, a.status, a.decided_by, a.note) for a in rt.approvals()}
        assert decided == {
            ('{"amount":5,"to":"bob"}', "used", "alice", None),
            ('{"amount":7,"to":"bob"}', "denied", "bob", "over budget"),
        }
        statuses = [e.status for e in rt.events(correlation_id="th-hitl")]
    assert statuses.count("executed") == 1 and statuses.count("approved") == 1


def test_resume_dar_cannot_record_is_refused_and_can_be_answered_again(tmp_path: Path) -> None:
    paid: Counter[str] = Counter()
    model = Paying(script=[{"amount": 5, "to": "bob"}])
    with Runtime(f"sqlite:///{tmp_path}/a.db", rules=[a_person_pays]) as rt:
        agent = hitl_agent(rt, "middleware", paid, model)
        asked_about(agent.invoke({"messages": [("user", "pay")]}, config("th-r")), model.script[0])
        wrong = [
            ({"decisions": [{"type": "approve"}]}, "by\n  Field required"),
            ({"decisions": [{"type": "approve"}], "by": " "}, "by\n  String should have at least"),
            (
                {"decisions": [{"type": "approve"}] * 2, "by": "al"},
                "decisions\n  List should have at most",
            ),
        ]
        for answer, why in wrong:
            with pytest.raises(ValidationError, match=why):
                agent.invoke(Command(resume=answer), config("th-r"))
            assert paid == Counter() and rt.approvals("pending")
        approve = {"decisions": [{"type": "approve"}], "by": "alice"}
        agent.invoke(Command(resume=approve), config("th-r"))
        assert paid == {"5.0 to bob": 1}


@pytest.mark.parametrize("kind", ["tools", "middleware"])
def test_an_edit_decision_runs_the_edited_call_once_and_never_the_request(
    tmp_path: Path, kind: str
) -> None:
    paid: Counter[str] = Counter()
    model = Paying(script=[{"amount": 500, "to": "bob"}] * 3)  # asked again after each refusal
    with Runtime(f"sqlite:///{tmp_path}/a.db", rules=[a_person_pays]) as rt:
        agent = hitl_agent(rt, kind, paid, model)
        asked_about(agent.invoke({"messages": [("user", "pay")]}, config("th-e")), model.script[0])

        def edit(args: dict[str, Any], name: str = "pay") -> dict[str, Any]:
            action = {"name": name, "args": args}
            return {"decisions": [{"type": "edit", "edited_action": action}], "by": "alice"}

        # Edits dar refuses (the schema; another tool): the model reads why, nothing runs,
        # and the request still waits for a person.
        for wrong, why in [
            (edit({"amount": "lots", "to": "bob"}), "$.amount"),
            (edit({"amount": 5, "to": "bob"}, "refund"), "cannot call 'refund'"),
        ]:
            agent.invoke(Command(resume=wrong), config("th-e"))
            told = model.seen[-1][-1]
            assert isinstance(told, ToolMessage) and told.status == "error"
            assert "the reviewer's edit was refused" in str(told.content)
            assert why in str(told.content) and not paid
            assert [a.status for a in rt.approvals()] == ["pending"]
            again = agent.invoke({"messages": [("user", "pay")]}, config("th-e"))
            asked_about(again, model.script[0])
        agent.invoke(Command(resume=edit({"amount": 300, "to": "bob"})), config("th-e"))
        told = model.seen[-1][-1]
        assert isinstance(told, ToolMessage) and told.status == "success"
        assert "(alice) approved this call with an edit" in str(told.content)  # the model knows
        assert "300" in str(told.content).split("Result:")[1]
        assert paid == {"300.0 to bob": 1}  # the edit once; the 500 never
        (used,) = rt.approvals("used")
        assert (used.decided_by, used.edited_input) == ("alice", '{"amount":300,"to":"bob"}')


def test_outside_a_graph_a_call_waiting_for_a_person_says_so(tmp_path: Path) -> None:
    paid: Counter[str] = Counter()
    with Runtime(f"sqlite:///{tmp_path}/a.db", rules=[a_person_pays]) as rt:
        rt.add_tool(payer(paid, "tools"))
        (pay,) = dar_langchain.tools(rt)
        with dar.session("direct"):
            said = pay.invoke({"amount": 5, "to": "bob"})
        assert said.startswith("Waiting for a person to approve this exact call") and not paid
        assert [a.status for a in rt.approvals()] == ["pending"]


# --- durable runs: the model journaled, suspension through the tool loop ----------------------


class Asking(BaseChatModel):
    """The model's side of a `loops` script: each turn once, counted (a `loops.Crash`
    happens where it is asked), with the usage a provider reports."""

    turns: list[Any]
    crash: Any  # loops.Crash

    @property
    def _llm_type(self) -> str:
        return "asking"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Asking:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        number = self.crash.before_asking()
        turn = self.turns[number]
        usage: UsageMetadata = {
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "input_token_details": {},
            "output_token_details": {},
        }
        if isinstance(turn, str):
            reply = AIMessage(content=turn, usage_metadata=usage)
        else:
            calls = [
                call(c.name, c.args(), 0) | {"id": f"c{number}_{i}"} for i, c in enumerate(turn)
            ]
            reply = AIMessage(content="", tool_calls=calls, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=reply)])


def own_tools(ran: Counter[str]) -> list[Any]:
    """The shop's tools as the agent's own LangChain tools, for DarMiddleware to route."""

    @lc_tool
    def get_price(item: str) -> str:
        """The price of one unit."""
        ran[f"price {item}"] += 1
        return json.dumps({"item": item, "price": 3})

    @lc_tool
    def place_order(item: str, quantity: int) -> str:
        """Order goods from the supplier."""
        ran[f"order {quantity} {item}"] += 1
        return json.dumps({"order": f"{quantity} x {item}", "status": "placed"})

    return [get_price, place_order]


SHOP_EFFECTS = {"get_price": "read", "place_order": "mutate-external"}
INSTRUCTIONS = "Order what is asked."


def harness(kind: str, tools: str, db: str) -> loops.Harness:
    """``dar-tools``: the shop's dar tools, ``tools(rt)``; ``own-tools``: the agent's own
    tools, registered in the runtime by the middleware (the runtime has only the rule)."""
    shop = loops.make_shop()
    if tools == "own-tools":
        shop = loops.Shop(shop.ran, [], shop.rules)
    return loops.Harness(kind, db, shop)


def shopper(
    h: loops.Harness, model: Asking, tools: str, instructions: str = INSTRUCTIONS
) -> Callable[..., Any]:
    """A durable agent whose loop is a ``create_agent`` agent with DarMiddleware (which
    journals its model calls) over the runtime ``h`` drives the run with."""

    def build() -> Any:
        middleware = DarMiddleware(h.rt, effects=SHOP_EFFECTS)
        given = dar_langchain.tools(h.rt) if tools == "dar-tools" else own_tools(h.shop.ran)
        return create_agent(model, given, middleware=[middleware], system_prompt=instructions)

    if h.kind == "sync":

        @dar.agent
        def shop_agent(request: str) -> str:
            out = build().invoke({"messages": [("user", request)]})
            return str(out["messages"][-1].content)

        return shop_agent

    @dar.agent
    async def shop_agent_async(request: str) -> str:
        out = await build().ainvoke({"messages": [("user", request)]})
        return str(out["messages"][-1].content)

    return shop_agent_async


# A sync agent runs a turn's calls in threads, whose order differs from run to run: its
# scripts make one call a turn (see DarMiddleware).
RUN_CASES = [
    ("async", "dar-tools"),
    ("async", "own-tools"),
    ("sync", "dar-tools"),
    ("sync", "own-tools"),
]


def scripts(kind: str) -> tuple[list[Turn], list[Turn]]:
    if kind == "async":
        return loops.SCRIPT, loops.APPROVAL
    return loops.ONE_A_TURN, loops.APPROVAL_ONE_A_TURN


@pytest.mark.parametrize(("kind", "tools"), RUN_CASES)
def test_durable_run_resumed_after_a_crash_asks_each_model_turn_once(
    tmp_path: Path, kind: str, tools: str
) -> None:
    script, _ = scripts(kind)
    whole = harness(kind, tools, f"sqlite:///{tmp_path / 'whole.db'}"), loops.Crash()
    agent = shopper(whole[0], Asking(turns=script, crash=whole[1]), tools)
    assert whole[0].start(agent, "whole", "order tea") == RunResult(
        "whole", "finished", loops.ANSWER
    )
    crashed = harness(kind, tools, f"sqlite:///{tmp_path / 'crashed.db'}"), loops.Crash(at=2)
    agent = shopper(crashed[0], Asking(turns=script, crash=crashed[1]), tools)
    resumed = loops.crash_and_resume(crashed[0], agent, "crashed")
    assert resumed == RunResult("crashed", "finished", loops.ANSWER)
    loops.check_whole_and_crashed(whole, crashed, turns=len(script))
    record = crashed[0].run("crashed")
    assert (record.tokens, record.tokens_saved) == (2 * len(script), 4)
    assert [kind for kind, _ in crashed[0].steps("crashed")].count("model") == len(script)


@pytest.mark.parametrize(("kind", "tools"), RUN_CASES)
def test_call_waiting_for_approval_suspends_the_run_until_approved(
    tmp_path: Path, kind: str, tools: str
) -> None:
    _, script = scripts(kind)
    h, crash = harness(kind, tools, f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash()
    agent = shopper(h, Asking(turns=script, crash=crash), tools)
    suspended = h.start(agent, "conv-1", "order caviar")
    assert suspended.status == "suspended" and suspended.approval_id is not None
    # Nothing after the caviar ran: not the coffee (queued behind it in the same turn, or
    # in the next), and the model was not asked again.
    asked = len(script) - 1 - (1 if kind == "sync" else 0)
    assert crash.asked == asked and h.shop.ran == loops.RAN_BEFORE_APPROVAL
    with Runtime(h.db) as rt:
        (pending,) = rt.approvals("pending")
    assert pending.approval_id == suspended.approval_id and pending.reason == loops.WAITS
    assert h.resume() == []  # undecided: nothing to resume
    (done,) = h.resume(approve=suspended.approval_id)
    assert done == RunResult("conv-1", "finished", loops.APPROVED)
    assert crash.asked == len(script) and h.shop.ran == loops.RAN_APPROVED


def test_resume_with_another_system_prompt_diverges_at_the_first_model_turn(
    tmp_path: Path,
) -> None:
    h, crash = harness("sync", "dar-tools", f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash(at=1)
    model = Asking(turns=loops.ONE_A_TURN, crash=crash)
    loops.start_and_crash(h, shopper(h, model, "dar-tools"), "conv-1")
    shopper(h, model, "dar-tools", instructions="Order twice what is asked.")
    (failed,) = h.resume()
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("ReplayDivergence") and "Order twice" in failed.error
    assert crash.asked == 1  # the recorded turn was not asked again


def hand_loop(h: loops.Harness, model: Asking) -> Callable[..., Any]:
    """A durable agent whose loop is one's own: ``durable(model)`` with the runtime's tools
    bound, each tool call made by hand (``rt.call``), one after another."""

    @dar.agent
    def loop_agent(request: str) -> str:
        bound = dar_langchain.durable(model).bind_tools(dar_langchain.tools(h.rt))
        messages: list[BaseMessage] = [HumanMessage(request)]
        while True:
            reply = bound.invoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                return str(reply.content)
            for c in reply.tool_calls:
                done = h.rt.call(c["name"], c["args"])  # a call waiting for a person suspends
                messages.append(ToolMessage(done.for_model().text, tool_call_id=c["id"]))

    return loop_agent


def test_durable_chat_model_in_a_loop_of_ones_own(tmp_path: Path) -> None:
    whole = loops.Harness("sync", f"sqlite:///{tmp_path / 'whole.db'}"), loops.Crash()
    agent = hand_loop(whole[0], Asking(turns=loops.SCRIPT, crash=whole[1]))
    assert whole[0].start(agent, "whole", "order tea") == RunResult(
        "whole", "finished", loops.ANSWER
    )
    crashed = loops.Harness("sync", f"sqlite:///{tmp_path / 'crashed.db'}"), loops.Crash(at=2)
    agent = hand_loop(crashed[0], Asking(turns=loops.SCRIPT, crash=crashed[1]))
    resumed = loops.crash_and_resume(crashed[0], agent, "crashed")
    assert resumed == RunResult("crashed", "finished", loops.ANSWER)
    loops.check_whole_and_crashed(whole, crashed, turns=3)
    assert crashed[0].steps("crashed")[0] == ("model", "Asking")

    h, crash = loops.Harness("sync", f"sqlite:///{tmp_path / 'approval.db'}"), loops.Crash()
    agent = hand_loop(h, Asking(turns=loops.APPROVAL, crash=crash))
    suspended = h.start(agent, "conv-1", "order caviar")
    assert suspended.status == "suspended" and suspended.approval_id is not None
    assert crash.asked == 2 and h.shop.ran == loops.RAN_BEFORE_APPROVAL
    (done,) = h.resume(approve=suspended.approval_id)
    assert done == RunResult("conv-1", "finished", loops.APPROVED)
    assert crash.asked == 3 and h.shop.ran == loops.RAN_APPROVED


def test_durable_model_outside_a_run_is_the_model(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    model = Scripted(first=FIRST_TURN)
    url = f"sqlite:///{tmp_path}/a.db"
    with Runtime(url, tools=dar_tools(ran), rules=[courier_serves_zone]) as rt:
        agent = create_agent(
            dar_langchain.durable(model), dar_langchain.tools(rt), middleware=[DarMiddleware(rt)]
        )
        for _ in range(2):  # as test_tools_sync_two_runs_of_one_thread, unwrapped
            out = agent.invoke({"messages": [("user", "ship A")]}, config("th-1"))
            assert out["messages"][-1].content == "done"
        assert ran == {"ship A fast": 1, "note fragile": 1}
        told = told_after_tools(model)
        assert len(told) == 2
        for answers in told:
            check_told(answers)
        check_log(rt.events(correlation_id="th-1"), "th-1")
        assert rt.runs() == [] and not rt.events(status="run_step")


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("langchain", "langchain")
    assert "pip install langchain " in said and "its [langchain] extra" in said


def run_example(name: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    example = ROOT / "examples" / "integrations" / name
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_example_runs() -> None:
    run_example("langchain_loop.py")


def test_approval_example_pays_the_approved_call_once() -> None:
    out = run_example("langchain_approval.py").splitlines()
    assert out[0].startswith("asked: payments over 100 need a person (approval ")
    assert out[1:] == [
        "  (paying 250.0 to bob)",
        "success: paid 250.0 to bob",
        "error: Refused by the rule large_payments_need_a_person: denied by alice: over budget."
        " Nothing was done. Calling this tool again with the same arguments will be refused"
        " again.",
        '  {"amount":900,"to":"bob"}: denied, decided by alice',
        '  {"amount":250,"to":"bob"}: used, decided by alice',
    ]
