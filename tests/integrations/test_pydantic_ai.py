"""dar.integrations.pydantic_ai against a real Pydantic AI agent driven by FunctionModel.

The scripted model sends, in one turn: a call, its duplicate with the members in another
order, a call a rule refuses, a wrong-typed argument and an unknown tool name; on the next
turn it records what it was told and ends. Each conversation runs twice on the same
database, as a restarted process would replay it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from pydantic_ai import Agent, RunContext, ToolDefinition
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

import dar
from dar import AsyncRuntime, Deny, Effect, NeedsApproval, Runtime, rule, tool
from dar.demo.scripted_model import Turn
from dar.integrations.pydantic_ai import APPROVAL_ID, DarToolset, adecide, decide, durable
from dar.records import RunResult
from tests.support import durable_loops as loops
from tests.support.shop import missing_sdk_error

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# --- the tools and rule the agent works with ----------------------------------------------


def make_tools(ran: Counter[str]) -> list[dar.Tool[Any]]:
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


@rule(applies_to=["ship_order", "ship_parcel"])
def courier_serves_zone(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    if inp.get("courier") == "slowpoke":
        return Deny("slowpoke does not serve this zone")
    return True


def call(name: str, args: str | dict[str, Any], n: int) -> ToolCallPart:
    return ToolCallPart(tool_name=name, args=args, tool_call_id=f"c{n}")


FIRST_TURN = [
    call("ship_order", '{"order_id": "A", "courier": "fast"}', 1),
    call("ship_order", '{"courier": "fast", "order_id": "A"}', 2),  # the same, reordered
    call("ship_order", {"order_id": "B", "courier": "slowpoke"}, 3),  # refused by the rule
    call("ship_order", {"order_id": 7, "courier": "fast"}, 4),  # wrong-typed
    call("note", {"text": "fragile"}, 5),
    call("launch_rocket", {}, 6),  # unknown: Pydantic AI answers it itself
]


class Script:
    """A model that sends ``first`` and then, told the results, finishes."""

    def __init__(self, first: list[ToolCallPart]) -> None:
        self.first = first
        self.told: list[list[Any]] = []  # the parts of each request after the tool calls

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        answers = [p for p in last.parts if isinstance(p, (ToolReturnPart, RetryPromptPart))]
        if not answers:
            return ModelResponse(parts=list(self.first))
        self.told.append(answers)
        return ModelResponse(parts=[TextPart("done")])


def by_call_id(parts: list[Any]) -> dict[str, Any]:
    return {p.tool_call_id: p for p in parts}


def check_told(told: list[Any]) -> None:
    answers = by_call_id(told)
    assert answers["c1"].content["tracking"] == "T-A"  # the dict, as without dar
    assert answers["c2"].content == answers["c1"].content
    refused = answers["c3"]
    assert isinstance(refused, ToolReturnPart) and refused.outcome == "failed"
    assert "Refused by the rule courier_serves_zone" in str(refused.content)
    assert "slowpoke does not serve this zone" in str(refused.content)
    assert answers["c4"].outcome == "failed" and "$.order_id" in answers["c4"].content
    assert answers["c5"].content == "noted"  # not quoted again
    unknown = answers["c6"]  # Pydantic AI answers an unknown name itself; it never reaches dar
    assert unknown.outcome == "retried" and "Unknown tool name" in unknown.content


def check_log(events: list[dar.Event], cid: str) -> None:
    assert events and all(e.correlation_id == cid for e in events)
    ships = [e for e in events if e.tool_name == "ship_order"]
    finals = Counter(e.status for e in ships if e.status != "started")
    assert finals["executed"] == 1
    assert finals["rejected"] == 4  # the rule and the wrong type, in each run
    assert {e.input.get("courier") for e in ships if e.rule_name} == {"slowpoke"}


# --- Pydantic AI with the runtime's own tools -------------------------------------------------


def test_sync_runtime_two_runs_of_one_conversation(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    script = Script(FIRST_TURN)
    with Runtime(
        f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[courier_serves_zone]
    ) as rt:
        agent = Agent(FunctionModel(script), toolsets=[DarToolset(rt)])
        for _ in range(2):
            assert agent.run_sync("ship A", conversation_id="conv-pai").output == "done"
        assert ran == {"ship A fast": 1, "note fragile": 1}
        for told in script.told:
            check_told(told)
        check_log(rt.events(correlation_id="conv-pai"), "conv-pai")


def test_async_runtime_runs_the_turn_concurrently_and_once(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    script = Script(FIRST_TURN)

    async def main() -> list[dar.Event]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[courier_serves_zone]
        ) as rt:
            agent = Agent(FunctionModel(script), toolsets=[DarToolset(rt)])
            for _ in range(2):
                result = await agent.run("ship A", conversation_id="conv-async")
                assert result.output == "done"
            return await rt.events(correlation_id="conv-async")

    events = asyncio.run(main())
    assert ran == {"ship A fast": 1, "note fragile": 1}
    assert len(script.told) == 2
    for told in script.told:
        check_told(told)
    check_log(events, "conv-async")


def test_session_and_explicit_id_come_before_the_conversation(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    turn = [call("note", {"text": "x"}, 1)]
    with Runtime(f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran)) as rt:
        agent = Agent(FunctionModel(Script(turn)), toolsets=[DarToolset(rt)])
        with dar.session("from-session"):
            agent.run_sync("go", conversation_id="conv-ignored")
        pinned = Agent(FunctionModel(Script(turn)), toolsets=[DarToolset(rt, correlation_id="pin")])
        pinned.run_sync("go", conversation_id="conv-ignored")
        assert rt.events(correlation_id="from-session")
        assert rt.events(correlation_id="pin")
        assert not rt.events(correlation_id="conv-ignored")


def test_tool_definitions_come_from_the_runtime(tmp_path: Path) -> None:
    seen: list[ToolDefinition] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.extend(info.function_tools)
        return ModelResponse(parts=[TextPart("ok")])

    with Runtime(f"sqlite:///{tmp_path}/a.db", tools=make_tools(Counter())) as rt:
        Agent(FunctionModel(model), toolsets=[DarToolset(rt)]).run_sync("hi")
        ship = next(d for d in seen if d.name == "ship_order")
        assert ship.description == "Hand an order to a courier."
        assert ship.parameters_json_schema["required"] == ["order_id", "courier"]


# --- wrapping a toolset dar does not own: a real MCP server -----------------------------------


class McpStdio(AbstractToolset[Any]):
    """A Pydantic AI toolset over an MCP server in a subprocess, on the mcp SDK's client.

    Pydantic AI's own MCPToolset needs the fastmcp client, which this environment lacks;
    this is the same shape: list the server's tools, call them, return their text."""

    def __init__(self, calls_file: Path) -> None:
        self.params = StdioServerParameters(
            command=sys.executable,
            args=[str(ROOT / "tests" / "support" / "mcp_servers" / "echo_server.py")],
            env={"DAR_MCP_CALLS": str(calls_file)},
        )
        self.stack: AsyncExitStack | None = None
        self.client: Client | None = None
        self.entered = 0  # the agent and each run enter it: one connection for all

    @property
    def id(self) -> str | None:
        return "echo"

    async def __aenter__(self) -> McpStdio:
        if self.entered == 0:
            self.stack = AsyncExitStack()
            self.client = await self.stack.enter_async_context(Client(self.params))
        self.entered += 1
        return self

    async def __aexit__(self, *args: Any) -> bool | None:
        self.entered -= 1
        if self.entered == 0 and self.stack is not None:
            await self.stack.aclose()
        return None

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        assert self.client is not None
        listed = await self.client.list_tools()
        validator = SchemaValidator(core_schema.dict_schema(core_schema.str_schema()))
        return {
            t.name: ToolsetTool(
                toolset=self,
                tool_def=ToolDefinition(
                    name=t.name, description=t.description, parameters_json_schema=t.input_schema
                ),
                max_retries=1,
                args_validator=validator,
            )
            for t in listed.tools
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        assert self.client is not None
        result = await self.client.call_tool(name, tool_args)
        return "".join(getattr(block, "text", "") for block in result.content)


MCP_TURN = [
    call("ship_parcel", '{"order_id": "A", "courier": "fast"}', 1),
    call("ship_parcel", '{"courier": "fast", "order_id": "A"}', 2),
    call("ship_parcel", {"order_id": "B", "courier": "slowpoke"}, 3),
    call("wipe_inventory", {"warehouse": "north"}, 4),  # not in the effect map: irreversible
    call("echo", {"text": "hi"}, 5),
    call("ship_parcel", {"order_id": 7, "courier": "fast"}, 6),  # misfits the server's schema
]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wrapped_mcp_toolset(tmp_path: Path, kind: str) -> None:
    calls_file = tmp_path / "calls.txt"
    calls_file.touch()
    script = Script(MCP_TURN)
    effects = {"echo": "read", "ship_*": "mutate-external"}
    url = f"sqlite:///{tmp_path}/a.db"

    async def main() -> list[dar.Event]:
        rt: Runtime | AsyncRuntime
        rt = Runtime(url, rules=[courier_serves_zone]) if kind == "sync" else AsyncRuntime(url)
        if kind == "async":
            rt.add_rule(courier_serves_zone)
        toolset = DarToolset(rt, wrap=McpStdio(calls_file), effects=effects)
        agent = Agent(FunctionModel(script), toolsets=[toolset])
        async with agent:
            for _ in range(2):
                assert (await agent.run("ship", conversation_id="conv-mcp")).output == "done"
        if isinstance(rt, AsyncRuntime):
            events = await rt.events(correlation_id="conv-mcp")
            await rt.close()
        else:
            events = rt.events(correlation_id="conv-mcp")
            rt.close()
        return events

    events = asyncio.run(main())
    assert calls_file.read_text().splitlines() == ["ship_parcel A fast"]
    for told in script.told:
        answers = by_call_id(told)
        assert answers["c1"].content == answers["c2"].content == "shipped A with fast"
        assert "Refused by the rule courier_serves_zone" in answers["c3"].content
        wipe = answers["c4"]
        assert wipe.outcome == "failed" and "irreversible but no rule applies" in wipe.content
        assert answers["c5"].content == "hi"
        assert answers["c6"].outcome == "failed" and answers["c6"].content.startswith(
            "Refused: invalid arguments: $.order_id: expected string, got integer. "
        )
    assert len(script.told) == 2
    statuses = Counter((e.tool_name, e.status) for e in events)
    assert statuses[("ship_parcel", "executed")] == 1
    misfits = {e.rejection_reason for e in events if e.input == {"order_id": 7, "courier": "fast"}}
    assert misfits == {"invalid arguments: $.order_id: expected string, got integer"}
    assert statuses[("echo", "executed")] == 2  # a read runs every time, and is logged
    # Refused and logged, with the rule that fails closed for an undeclared effect.
    wiped = [(e.status, e.rule_name) for e in events if e.tool_name == "wipe_inventory"]
    assert wiped and set(wiped) == {("rejected", "dar:undeclared:wipe_inventory")}


# --- a rule's approval as Pydantic AI's own deferred approval ---------------------------------


@rule(applies_to="ship_order")
def express_needs_a_person(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return NeedsApproval("express costs extra") if inp["courier"] == "express" else True


def asking_once(*calls: ToolCallPart) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    """A model that makes ``calls`` when asked first and then reads back what it was told."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        told = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if not told:
            return ModelResponse(parts=list(calls))
        return ModelResponse(
            parts=[TextPart(" | ".join(f"{p.outcome}: {p.content}" for p in told))]
        )

    return model


def approving_agent(rt: Runtime | AsyncRuntime, *calls: ToolCallPart) -> Agent[None, Any]:
    output: Any = [str, DeferredToolRequests]
    return Agent(FunctionModel(asking_once(*calls)), output_type=output, toolsets=[DarToolset(rt)])


def pending(result: Any) -> DeferredToolRequests:
    assert isinstance(result.output, DeferredToolRequests), result.output
    return result.output


def test_approval_is_the_sdks_deferred_approval_and_runs_the_approved_call_once(
    tmp_path: Path,
) -> None:
    ran: Counter[str] = Counter()
    express = call("ship_order", {"order_id": "A", "courier": "express"}, 1)
    with Runtime(
        f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[express_needs_a_person]
    ) as rt:
        agent = approving_agent(rt, express)
        asked = agent.run_sync("ship A by express", conversation_id="conv-hitl")
        requests = pending(asked)
        (waiting,) = rt.approvals("pending")
        assert [c.tool_call_id for c in requests.approvals] == ["c1"] and not ran
        assert requests.metadata["c1"][APPROVAL_ID] == waiting.approval_id
        assert "express costs extra" in requests.metadata["c1"]["reason"]

        results = decide(rt, requests, {"c1": True}, by="alice")
        done = agent.run_sync(message_history=asked.all_messages(), deferred_tool_results=results)
        shipped = "{'courier': 'express', 'order_id': 'A', 'tracking': 'T-A'}"  # as recorded
        assert done.output == f"success: {shipped}"
        assert ran == {"ship A express": 1} and results.answered_by == {"c1": "alice"}
        # The resume retried as it was: answered from the record, not run again.
        retried = agent.run_sync(
            message_history=asked.all_messages(), deferred_tool_results=results
        )
        assert retried.output == done.output and ran == {"ship A express": 1}
        (used,) = rt.approvals("used")
        assert (used.approval_id, used.decided_by) == (waiting.approval_id, "alice")

        # The same conversation again, with other arguments: the grant does not cover them.
        other = call("ship_order", {"order_id": "B", "courier": "express"}, 1)
        again = approving_agent(rt, other).run_sync("ship B", conversation_id="conv-hitl")
        assert pending(again).metadata["c1"][APPROVAL_ID] != waiting.approval_id
        assert ran == {"ship A express": 1}
        statuses = [e.status for e in rt.events(correlation_id="conv-hitl")]
        assert statuses.count("approved") == 1 and statuses.count("executed") == 1


def test_denial_reaches_the_model_and_binds_the_same_call_later(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    express = call("ship_order", {"order_id": "C", "courier": "express"}, 1)

    async def main() -> None:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[express_needs_a_person]
        ) as rt:
            agent = approving_agent(rt, express)
            asked = await agent.run("ship C by express", conversation_id="conv-deny")
            said = DeferredToolResults(
                approvals={"c1": ToolDenied("express is for urgent orders")},
                answered_by={"c1": "bob"},
            )
            results = await adecide(rt, pending(asked), said)
            done = await agent.run(
                message_history=asked.all_messages(), deferred_tool_results=results
            )
            assert done.output == "denied: express is for urgent orders"
            (denied,) = await rt.approvals("denied")
            assert (denied.decided_by, denied.note) == ("bob", "express is for urgent orders")
            # Asked again, the same call is refused by dar with the same reason.
            retried = await approving_agent(rt, express).run("again", conversation_id="conv-deny")
            assert retried.output.startswith("failed: Refused by the rule express_needs_a_person")
            assert "denied by bob: express is for urgent orders" in retried.output

    asyncio.run(main())
    assert not ran


def test_deciding_needs_who_and_cannot_be_skipped(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    express = call("ship_order", {"order_id": "D", "courier": "express"}, 1)
    with Runtime(
        f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[express_needs_a_person]
    ) as rt:
        agent = approving_agent(rt, express)
        asked = agent.run_sync("ship D")
        requests = pending(asked)
        with pytest.raises(dar.ConfigurationError, match=r"say who decided the call c1"):
            decide(rt, requests, {"c1": True})
        assert [a.status for a in rt.approvals()] == ["pending"]  # nothing was recorded
        # Approved in Pydantic AI alone, the call still waits for dar's grant: nothing runs.
        bare = requests.build_results(approve_all=True)
        again = agent.run_sync(message_history=asked.all_messages(), deferred_tool_results=bare)
        assert pending(again).metadata["c1"] == requests.metadata["c1"]
        assert not ran


def test_an_approval_with_other_arguments_runs_the_edit_once_and_never_the_request(
    tmp_path: Path,
) -> None:
    ran: Counter[str] = Counter()
    express = call("ship_order", {"order_id": "E", "courier": "express"}, 1)
    with Runtime(
        f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[express_needs_a_person]
    ) as rt:
        agent = approving_agent(rt, express)
        asked = agent.run_sync("ship E", conversation_id="conv-edit")
        requests = pending(asked)
        # An edit the tool's schema refuses is refused before anything is recorded.
        broken = ToolApproved(override_args={"order_id": "E", "courier": 5})
        with pytest.raises(dar.DarError, match=r"\$\.courier"):
            decide(rt, requests, {"c1": broken}, by="alice")
        assert [a.status for a in rt.approvals()] == ["pending"]
        edit = ToolApproved(override_args={"order_id": "E", "courier": "fast"})
        results = decide(rt, requests, {"c1": edit}, by="alice")
        done = agent.run_sync(message_history=asked.all_messages(), deferred_tool_results=results)
        assert "'courier': 'fast'" in done.output
        again = agent.run_sync(message_history=asked.all_messages(), deferred_tool_results=results)
        assert again.output == done.output
        assert ran == {"ship E fast": 1}  # the edit once, the request never
        (used,) = rt.approvals("used")
        assert used.decided_by == "alice" and used.edited_input == (
            '{"courier":"fast","order_id":"E"}'
        )


# --- a wrapped toolset's arguments and results -------------------------------------------------


@rule(applies_to="refund")
def small_refunds_only(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return Deny("over 100") if inp["amount"] > 100 else True  # a str amount would crash here


def refund(order_id: str, amount: float) -> str:
    """Refund part of an order."""
    return f"refunded {amount} on {order_id}"


def test_wrapped_tool_arguments_are_judged_by_its_schema_before_the_rules(tmp_path: Path) -> None:
    """The model reads the same refusal as for an owned tool of the same signature."""
    lots = call("refund", {"order_id": "A", "amount": "lots"}, 1)
    told: dict[str, str] = {}
    for kind in ("owned", "wrapped"):
        with Runtime(f"sqlite:///{tmp_path}/{kind}.db", rules=[small_refunds_only]) as rt:
            if kind == "owned":
                rt.add_tool(tool(effect=Effect.MUTATE_EXTERNAL)(refund))
                toolset = DarToolset(rt)
            else:
                wrapped = FunctionToolset([refund])
                toolset = DarToolset(rt, wrap=wrapped, effects={"refund": "mutate-external"})
            told[kind] = (
                Agent(FunctionModel(asking_once(lots)), toolsets=[toolset])
                .run_sync("refund", conversation_id="conv-lots")
                .output
            )
            (refused,) = [e for e in rt.events() if e.tool_name == "refund"]
            assert refused.status == "rejected" and refused.rule_name is None
            assert (
                refused.rejection_reason
                == "invalid arguments: $.amount: expected number, got string"
            )
    assert told["wrapped"] == told["owned"]
    assert told["owned"].startswith("failed: Refused: invalid arguments: $.amount: expected number")


def test_wrapped_tool_results_reach_the_model_as_without_dar(tmp_path: Path) -> None:
    def quote(order_id: str) -> dict[str, Any]:
        """Price an order."""
        return {"order_id": order_id, "total": 12.5, "lines": [1, 2]}

    def greet(name: str) -> str:
        """Greet someone."""
        return f"hello {name}"

    def count(word: str) -> int:
        """Count a word's letters."""
        return len(word)

    turn = [
        call("quote", {"order_id": "A"}, 1),
        call("greet", {"name": "Ana"}, 2),
        call("count", {"word": "four"}, 3),
    ]
    told: dict[str, dict[str, Any]] = {}
    with Runtime(f"sqlite:///{tmp_path}/a.db") as rt:
        for kind in ("bare", "dar"):
            script = Script(turn)
            toolset: AbstractToolset[Any] = FunctionToolset([quote, greet, count])
            if kind == "dar":
                toolset = DarToolset(rt, wrap=toolset, effects={"*": "read"})
            Agent(FunctionModel(script), toolsets=[toolset]).run_sync("go")
            told[kind] = {p.tool_call_id: p.content for p in script.told[0]}
    assert told["dar"] == told["bare"]
    assert told["dar"]["c1"] == {"order_id": "A", "total": 12.5, "lines": [1, 2]}
    assert told["dar"]["c2"] == "hello Ana" and told["dar"]["c3"] == 4


# --- durable runs: the model journaled, suspension through the tool loop ----------------------


class Asking:
    """The model's side of a `loops` script, for ``FunctionModel``: each turn once, counted
    (a `loops.Crash` happens where it is asked), whole or streamed."""

    def __init__(self, turns: list[Turn], crash: loops.Crash) -> None:
        self.turns, self.crash = turns, crash
        self.streamed = 0  # the turns answered as a stream

    def model(self) -> FunctionModel:
        return FunctionModel(self.answer, stream_function=self.stream)

    async def answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        number = self.crash.before_asking()
        turn = self.turns[number]
        if isinstance(turn, str):
            return ModelResponse(parts=[TextPart(turn)])
        return ModelResponse(
            parts=[
                ToolCallPart(tool_name=c.name, args=c.arguments, tool_call_id=f"c{number}_{i}")
                for i, c in enumerate(turn)
            ]
        )

    async def stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        number = self.crash.before_asking()
        self.streamed += 1
        turn = self.turns[number]
        if isinstance(turn, str):
            for word in re.findall(r"\S+\s*", turn):
                yield word
            return
        for i, c in enumerate(turn):
            yield {i: DeltaToolCall(name=c.name, tool_call_id=f"c{number}_{i}")}
            for piece in (c.arguments[:9], c.arguments[9:]):
                yield {i: DeltaToolCall(json_args=piece)}


INSTRUCTIONS = "Order what is asked."


def shopper(
    h: loops.Harness, asking: Asking, mode: str, instructions: str = INSTRUCTIONS
) -> Callable[..., Any]:
    """A durable agent whose loop is a Pydantic AI ``Agent`` with the durable model and
    ``DarToolset`` over the runtime ``h`` drives the run with."""

    def build() -> Agent[None, str]:
        toolsets = [DarToolset(h.rt)]
        return Agent(durable(asking.model()), instructions=instructions, toolsets=toolsets)

    async def handle(ctx: RunContext[None], events: AsyncIterable[Any]) -> None:
        async for _ in events:
            pass

    # With an event stream handler every model request is streamed.
    handler = handle if mode == "stream" else None

    if h.kind == "sync":

        @dar.agent
        def shop_agent(request: str) -> str:
            return build().run_sync(request, event_stream_handler=handler).output

        return shop_agent

    @dar.agent
    async def shop_agent_async(request: str) -> str:
        return (await build().run(request, event_stream_handler=handler)).output

    return shop_agent_async


RUN_CASES = [("async", "plain"), ("async", "stream"), ("sync", "plain"), ("sync", "stream")]


@pytest.mark.parametrize(("kind", "mode"), RUN_CASES)
def test_durable_run_resumed_after_a_crash_asks_each_model_turn_once(
    tmp_path: Path, kind: str, mode: str
) -> None:
    whole = loops.Harness(kind, f"sqlite:///{tmp_path / 'whole.db'}"), loops.Crash()
    asking = Asking(loops.SCRIPT, whole[1])
    agent = shopper(whole[0], asking, mode)
    assert whole[0].start(agent, "whole", "order tea") == RunResult(
        "whole", "finished", loops.ANSWER
    )
    assert asking.streamed == (3 if mode == "stream" else 0)
    crashed = loops.Harness(kind, f"sqlite:///{tmp_path / 'crashed.db'}"), loops.Crash(at=2)
    agent = shopper(crashed[0], Asking(loops.SCRIPT, crashed[1]), mode)
    resumed = loops.crash_and_resume(crashed[0], agent, "crashed")
    assert resumed == RunResult("crashed", "finished", loops.ANSWER)
    loops.check_whole_and_crashed(whole, crashed, turns=3)
    model = "function:answer:stream"
    assert crashed[0].steps("crashed") == [
        ("model", model), ("tool", "get_price"),
        ("model", model), ("tool", "place_order"), ("tool", "place_order"),
        ("model", model),
    ]  # fmt: skip


@pytest.mark.parametrize(("kind", "mode"), RUN_CASES)
def test_call_waiting_for_approval_suspends_the_run_until_approved(
    tmp_path: Path, kind: str, mode: str
) -> None:
    h, crash = loops.Harness(kind, f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash()
    agent = shopper(h, Asking(loops.APPROVAL, crash), mode)
    suspended = h.start(agent, "conv-1", "order caviar")
    assert suspended.status == "suspended" and suspended.approval_id is not None
    # Nothing after the caviar ran: the coffee queued behind it in the same turn did not
    # start, and the model was not asked again.
    assert crash.asked == 2 and h.shop.ran == loops.RAN_BEFORE_APPROVAL
    assert h.steps("conv-1")[-1] == ("tool", "place_order")  # the tea, before the caviar
    with Runtime(h.db) as rt:
        (pending,) = rt.approvals("pending")
    assert pending.approval_id == suspended.approval_id and pending.reason == loops.WAITS
    assert h.resume() == []  # undecided: nothing to resume
    (done,) = h.resume(approve=suspended.approval_id)
    assert done == RunResult("conv-1", "finished", loops.APPROVED)
    assert crash.asked == 3 and h.shop.ran == loops.RAN_APPROVED


def test_resume_with_other_instructions_diverges_at_the_first_model_turn(tmp_path: Path) -> None:
    h, crash = loops.Harness("async", f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash(at=1)
    asking = Asking(loops.SCRIPT, crash)
    loops.start_and_crash(h, shopper(h, asking, "plain"), "conv-1")
    shopper(h, asking, "plain", instructions="Order twice what is asked.")
    (failed,) = h.resume()
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("ReplayDivergence") and "Order twice" in failed.error
    assert crash.asked == 1  # the recorded turn was not asked again


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_model_request_cut_off_by_its_timeout_is_cancelled_and_not_recorded(
    tmp_path: Path, kind: str
) -> None:
    seen: list[str] = []

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("answered")
        return ModelResponse(parts=[TextPart("too late")])

    h = loops.Harness(kind, f"sqlite:///{tmp_path / 'loops.db'}")

    def build() -> Agent[None, str]:
        settings: ModelSettings = {"request_timeout": 0.2}
        return Agent(durable(FunctionModel(slow)), model_settings=settings)

    @dar.agent
    def impatient(request: str) -> str:
        return build().run_sync(request).output

    @dar.agent
    async def impatient_async(request: str) -> str:
        return (await build().run(request)).output

    started = time.monotonic()
    failed = h.start(impatient if kind == "sync" else impatient_async, "conv-1", "hi")
    assert failed.status == "failed" and "timed out" in (failed.error or "")
    assert time.monotonic() - started < 3  # the run did not wait for the model's answer
    time.sleep(0.1)
    assert seen == ["cancelled"] and h.steps("conv-1") == []


def test_durable_model_outside_a_run_is_the_model(tmp_path: Path) -> None:
    ran: Counter[str] = Counter()
    script = Script(FIRST_TURN)
    with Runtime(
        f"sqlite:///{tmp_path}/a.db", tools=make_tools(ran), rules=[courier_serves_zone]
    ) as rt:
        agent = Agent(durable(FunctionModel(script)), toolsets=[DarToolset(rt)])
        for _ in range(2):  # as test_sync_runtime_two_runs_of_one_conversation, unwrapped
            assert agent.run_sync("ship A", conversation_id="conv-pai").output == "done"
        assert ran == {"ship A fast": 1, "note fragile": 1}
        for told in script.told:
            check_told(told)
        check_log(rt.events(correlation_id="conv-pai"), "conv-pai")
        assert rt.runs() == [] and not rt.events(status="run_step")


# --- the extra is named when the SDK is missing -------------------------------------------


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("pydantic_ai", "pydantic_ai")
    assert "pip install pydantic-ai-slim " in said and "its [pydantic-ai] extra" in said


@pytest.mark.parametrize(
    ("name", "told"),
    [
        ("pydantic_ai_loop.py", "Refused by the rule courier_serves_zone"),
        (
            "pydantic_ai_approval.py",
            "Results: {'tracking': 'T-ORD-1'} | ORD-2 can wait for the van",
        ),
    ],
)
def test_example_runs(name: str, told: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    example = ROOT / "examples" / "integrations" / name
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert told in done.stdout
