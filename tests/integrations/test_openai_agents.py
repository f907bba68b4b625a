"""dar.integrations.openai_agents with the real Agents SDK (Agent + Runner) over the real
openai client, against the local model server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import agents
import openai
import pytest

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer, ToolCall
from dar.errors import ConfigurationError
from dar.integrations import openai_agents
from dar.records import RunResult
from tests.support import durable_loops as loops
from tests.support.shop import (
    ANSWER,
    BROKEN,
    CONVERSATION,
    UNKNOWN,
    calls_per_run,
    check_handler_ran_once,
    check_log,
    check_refusal_seen,
    make_shop,
    missing_sdk_error,
    run_example,
    script,
)

REQUEST = "Order 2 tea, 50 gold and a coffee."
CALLS = calls_per_run(text_arguments=True)

agents.set_tracing_disabled(True)


def model_for(client: openai.AsyncOpenAI, api: str) -> agents.Model:
    if api == "chat":
        return agents.OpenAIChatCompletionsModel(model="test-model", openai_client=client)
    return agents.OpenAIResponsesModel(model="test-model", openai_client=client)


def agent_for(client: openai.AsyncOpenAI, tools: list[Any], api: str) -> agents.Agent[Any]:
    model = model_for(client, api)
    return agents.Agent(name="shop", instructions="Order what is asked.", model=model, tools=tools)


# The SDK answers a call to a tool the agent lacks by itself; this makes it tell the model
# instead of failing the run.
CONFIG = agents.RunConfig(tool_not_found_behavior="return_error_to_model")


def tool_results(server: ModelServer, api: str) -> list[str]:
    if api == "chat":
        return [
            m["content"]
            for body in server.bodies("/chat/completions")
            for m in body["messages"]
            if m.get("role") == "tool"
        ]
    return [
        i["output"]
        for body in server.bodies("/responses")
        for i in body["input"]
        if i.get("type") == "function_call_output"
    ]


def check_conversation(server: ModelServer, db: str, shop: Any, api: str) -> None:
    check_handler_ran_once(shop)
    with Runtime(db) as rt:
        check_log(rt.events(correlation_id=CONVERSATION), calls=CALLS, unknown_logged=False)
    results = tool_results(server, api)
    check_refusal_seen(results)
    assert any("invalid JSON" in r for r in results), results


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_async_runtime_takes_the_run_group_id(tmp_path: Path, api: str) -> None:
    shop, db = make_shop(asynchronous=True), f"sqlite:///{tmp_path / 'agent.db'}"
    config = agents.RunConfig(
        group_id=CONVERSATION, tool_not_found_behavior="return_error_to_model"
    )

    async def main(server: ModelServer) -> None:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        for _ in range(2):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                agent = agent_for(client, openai_agents.function_tools(rt), api)
                result = await agents.Runner.run(agent, REQUEST, run_config=config)
                assert result.final_output == ANSWER
        await client.close()

    with ModelServer(script(text_arguments=True)) as server:
        asyncio.run(main(server))
    check_conversation(server, db, shop, api)


def test_sync_runtime_in_a_session(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(script(text_arguments=True)) as server:
        for _ in range(2):
            client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
            with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
                agent = agent_for(client, openai_agents.function_tools(rt), "chat")
                with dar.session(CONVERSATION):
                    result = agents.Runner.run_sync(agent, REQUEST, run_config=CONFIG)
                assert result.final_output == ANSWER
    check_conversation(server, db, shop, "chat")


def test_correlation_id_argument_wins(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    config = agents.RunConfig(
        group_id="trace-group", tool_not_found_behavior="return_error_to_model"
    )
    with ModelServer(script(text_arguments=True)) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
            tools = openai_agents.function_tools(rt, correlation_id=CONVERSATION)
            agent = agent_for(client, tools, "chat")
            with dar.session("outer-session"):
                agents.Runner.run_sync(agent, REQUEST, run_config=config)
            assert {e.correlation_id for e in rt.events()} == {CONVERSATION}


def test_function_tools_describe_the_runtime_tools(tmp_path: Path) -> None:
    shop = make_shop()
    with Runtime(f"sqlite:///{tmp_path / 'a.db'}", tools=shop.tools, rules=shop.rules) as rt:
        (made,) = openai_agents.function_tools(rt)
    assert isinstance(made, agents.FunctionTool)
    assert made.name == "place_order"
    assert made.description == "Order goods from the supplier."
    assert made.strict_json_schema is True
    assert made.params_json_schema == rt.tool_schemas("openai-responses")[0]["parameters"]
    assert made.needs_approval is False  # its one rule answers Allow | Deny: it never asks


def test_only_a_tool_a_rule_may_send_to_a_person_stops_the_sdk(tmp_path: Path) -> None:
    shop = loops.make_shop()  # its rule of place_order may answer NeedsApproval

    @dar.rule(applies_to="get_price")
    def undeclared(inp: dict[str, Any], ctx: Any):  # type: ignore[no-untyped-def]
        return True

    for rules, asking in [(shop.rules, {"place_order"}), ([undeclared], {"get_price"})]:
        with Runtime(f"sqlite:///{tmp_path / 'a.db'}", tools=shop.tools, rules=rules) as rt:
            made = openai_agents.function_tools(rt)
        assert {t.name for t in made if callable(t.needs_approval)} == asking


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("agents", "openai_agents")
    assert said == (
        "this integration needs openai-agents: pip install openai-agents (or install "
        "durable-agent-runtime with its [openai-agents] extra: pip install '.[openai-agents]' "
        "in a checkout)"
    )


def test_example_runs(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    # By default the SDK fails a run whose model calls a tool the agent lacks, so the
    # example's conversation has no such call; the rest of the script is the same.
    turns = [
        [c for c in t if c is not UNKNOWN] if isinstance(t, list) else t
        for t in script(text_arguments=True)
    ]
    with ModelServer(turns) as server:
        env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "test"}
        done = run_example("openai_agents_loop.py", env, db)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    assert done.stdout.count("supplier: ordering") == 2
    with Runtime(f"sqlite:///{db}") as rt:
        executed = rt.events(status="executed")
    assert sorted(e.input["item"] for e in executed) == ["coffee", "tea"]


# --- durable runs: the model journaled, suspension through the tool loop ----------------------


class Asking(agents.Model):
    """The scripted server's model, counting each time it is really asked (the crash of a
    `loops.Crash` happens there, before the request is sent)."""

    def __init__(self, live: agents.Model, crash: loops.Crash) -> None:
        self.live, self.crash = live, crash
        self.model = "test-model"  # the name its steps are journaled under

    async def get_response(self, *args: Any, **kwargs: Any) -> agents.ModelResponse:
        self.crash.before_asking()
        return await self.live.get_response(*args, **kwargs)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.crash.before_asking()
        async for event in self.live.stream_response(*args, **kwargs):
            yield event


class AskingProvider(agents.ModelProvider):
    """A provider of `Asking` chat models, for ``durable(provider)``."""

    def __init__(self, client: openai.AsyncOpenAI, crash: loops.Crash) -> None:
        self.client, self.crash = client, crash

    def get_model(self, model_name: str | None) -> agents.Model:
        chat = agents.OpenAIChatCompletionsModel(model=model_name or "", openai_client=self.client)
        return Asking(chat, self.crash)


INSTRUCTIONS = "Order what is asked."


def shopper(
    h: loops.Harness,
    server: ModelServer,
    crash: loops.Crash,
    api: str,
    instructions: str = INSTRUCTIONS,
) -> Callable[..., Any]:
    """A durable agent whose loop is the Agents SDK's ``Runner`` with the durable model (or
    provider) and dar's tools, on the runtime ``h`` drives the run with."""

    def build() -> tuple[agents.Agent[Any], agents.RunConfig]:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        config = agents.RunConfig()
        if api == "provider":
            config = agents.RunConfig(
                model_provider=openai_agents.durable(AskingProvider(client, crash))
            )
            model: agents.Model | str = "test-model"
        else:
            live = model_for(client, "chat" if api == "chat-stream" else api)
            model = openai_agents.durable(Asking(live, crash))
        tools = openai_agents.function_tools(h.rt)
        agent = agents.Agent(name="shop", instructions=instructions, model=model, tools=tools)
        return agent, config

    async def run(request: str) -> str:
        agent, config = build()
        if api == "chat-stream":
            streamed = agents.Runner.run_streamed(agent, request, run_config=config)
            async for _ in streamed.stream_events():
                pass
            return str(streamed.final_output)
        result = await agents.Runner.run(agent, request, run_config=config)
        return str(result.final_output)

    if h.kind == "sync":

        @dar.agent
        def shop_agent(request: str) -> str:
            if api == "chat-stream":  # the streamed loop on an event loop of its own
                return asyncio.run(run(request))
            agent, config = build()
            return str(agents.Runner.run_sync(agent, request, run_config=config).final_output)

        return shop_agent

    @dar.agent
    async def shop_agent_async(request: str) -> str:
        return await run(request)

    return shop_agent_async


RUN_CASES = [
    ("async", "chat"),
    ("async", "responses"),
    ("async", "chat-stream"),
    ("sync", "provider"),
    ("sync", "chat-stream"),
]


@pytest.mark.parametrize(("kind", "api"), RUN_CASES)
def test_durable_run_resumed_after_a_crash_asks_each_model_turn_once(
    tmp_path: Path, kind: str, api: str
) -> None:
    whole = loops.Harness(kind, f"sqlite:///{tmp_path / 'whole.db'}"), loops.Crash()
    with ModelServer(loops.SCRIPT) as server:
        done = whole[0].start(shopper(whole[0], server, whole[1], api), "whole", "order tea")
        assert done == RunResult("whole", "finished", loops.ANSWER)
        assert len(server.requests) == 3
    crashed = loops.Harness(kind, f"sqlite:///{tmp_path / 'crashed.db'}"), loops.Crash(at=2)
    with ModelServer(loops.SCRIPT) as server:
        resumed = loops.crash_and_resume(
            crashed[0], shopper(crashed[0], server, crashed[1], api), "crashed"
        )
        assert resumed == RunResult("crashed", "finished", loops.ANSWER)
        assert len(server.requests) == 3  # two turns before the crash, one after
    loops.check_whole_and_crashed(whole, crashed, turns=3)
    if api != "chat-stream":  # the server reports 2 tokens a call (not in a stream)
        record = crashed[0].run("crashed")
        assert (record.tokens, record.tokens_saved) == (6, 4)
    model = "test-model"
    assert crashed[0].steps("crashed") == [
        ("model", model), ("tool", "get_price"),
        ("model", model), ("tool", "place_order"), ("tool", "place_order"),
        ("model", model),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "api"), [("async", "chat"), ("async", "chat-stream"), ("sync", "chat")]
)
def test_call_waiting_for_approval_suspends_the_run_until_approved(
    tmp_path: Path, kind: str, api: str
) -> None:
    h, crash = loops.Harness(kind, f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash()
    with ModelServer(loops.APPROVAL) as server:
        agent = shopper(h, server, crash, api)
        suspended = h.start(agent, "conv-1", "order caviar")
        assert suspended.status == "suspended" and suspended.approval_id is not None
        # Nothing after the caviar ran: the coffee queued behind it in the same turn did not
        # start, and the model was not asked again.
        assert len(server.requests) == 2 and h.shop.ran == loops.RAN_BEFORE_APPROVAL
        assert h.steps("conv-1")[-1] == ("tool", "place_order")  # the tea, before the caviar
        with Runtime(h.db) as rt:
            (pending,) = rt.approvals("pending")
        assert pending.approval_id == suspended.approval_id and pending.reason == loops.WAITS
        assert h.resume() == []  # undecided: nothing to resume
        (done,) = h.resume(approve=suspended.approval_id)
        assert done == RunResult("conv-1", "finished", loops.APPROVED)
        assert len(server.requests) == 3 and h.shop.ran == loops.RAN_APPROVED


def test_resume_with_other_instructions_diverges_at_the_first_model_turn(tmp_path: Path) -> None:
    h, crash = loops.Harness("async", f"sqlite:///{tmp_path / 'loops.db'}"), loops.Crash(at=1)
    with ModelServer(loops.SCRIPT) as server:
        loops.start_and_crash(h, shopper(h, server, crash, "chat"), "conv-1")
        shopper(h, server, crash, "chat", instructions="Order twice what is asked.")
        (failed,) = h.resume()
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.startswith("ReplayDivergence") and "Order twice" in failed.error
        assert len(server.requests) == 1  # the recorded turn was not asked again


def test_durable_model_outside_a_run_is_the_model(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(script(text_arguments=True)) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
            agent = agent_for(client, openai_agents.function_tools(rt), "chat")
            agent.model = openai_agents.durable(model_for(client, "chat"))
            for _ in range(2):  # as test_sync_runtime_in_a_session does without durable()
                with dar.session(CONVERSATION):
                    result = agents.Runner.run_sync(agent, REQUEST, run_config=CONFIG)
                assert result.final_output == ANSWER
            assert rt.runs() == [] and not rt.events(status="run_step")
    check_conversation(server, db, shop, "chat")


# --- a person decides, in the SDK's own way ----------------------------------------------------

CAVIAR_TWICE = ToolCall("place_order", '{"item": "caviar", "quantity": 2}')
#: The tea runs, the caviar waits for a person, the coffee runs; once the caviar is decided
#: the model answers. The same conversation again: the caviar once more, and twice as much.
ASKED: list[Any] = [*loops.APPROVAL, [loops.CAVIAR, CAVIAR_TWICE], loops.APPROVED]
BUDGET = "caviar is over budget"


@contextlib.asynccontextmanager
async def shop_runtime(kind: str, db: str, shop: loops.Shop) -> AsyncIterator[Any]:
    if kind == "async":
        async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as art:
            yield art
    else:
        with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
            yield rt


async def settled(value: Any) -> Any:
    """A helper's answer: awaited on an `AsyncRuntime`, as is on a `Runtime`."""
    return await value if inspect.isawaitable(value) else value


def interrupted_on_the_caviar(result: Any) -> Any:
    """The run stopped at the SDK's own interruption: the caviar, and only it."""
    (item,) = result.interruptions
    assert result.final_output is None
    assert item.name == "place_order" and json.loads(item.arguments) == json.loads(
        loops.CAVIAR.arguments
    )
    return item


async def run(agent: agents.Agent[Any], given: Any, streamed: bool) -> Any:
    """``Runner.run``, or ``Runner.run_streamed`` with its events drained."""
    if not streamed:
        return await agents.Runner.run(agent, given)
    result = agents.Runner.run_streamed(agent, given)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize(("kind", "streamed"), [("async", False), ("sync", False), ("async", True)])
def test_approve_in_the_sdk_runs_the_call_once_and_other_arguments_ask_again(
    tmp_path: Path, kind: str, streamed: bool
) -> None:
    shop, db = loops.make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        async with shop_runtime(kind, db, shop) as rt:
            tools = openai_agents.function_tools(rt, correlation_id=CONVERSATION)
            agent = agent_for(client, tools, "chat")
            result = await run(agent, "order caviar", streamed)
            item = interrupted_on_the_caviar(result)
            assert shop.ran == loops.RAN_APPROVED - Counter({"order 1 caviar": 1})
            state = result.to_state()
            grant = await settled(openai_agents.approve(rt, state, item, by="alice"))
            assert grant.decided_by == "alice" and grant.reason == loops.WAITS
            resumed = await run(agent, state, streamed)
            assert resumed.final_output == loops.APPROVED and not resumed.interruptions
            assert shop.ran == loops.RAN_APPROVED  # the caviar once, on the grant
            # The same conversation again: the caviar answers from the record, twice as
            # much caviar is a new request (the grant was for one, and it is used).
            again = await run(agent, "order caviar", streamed)
            (asked,) = again.interruptions
            assert asked.arguments == CAVIAR_TWICE.arguments
            assert shop.ran == loops.RAN_APPROVED
            (pending,) = await settled(rt.approvals("pending"))
            assert pending.approval_id != grant.approval_id
        await client.close()

    with ModelServer(ASKED) as server:
        asyncio.run(main(server))
        assert len(server.requests) == 4
    with Runtime(db) as rt:
        log = rt.events(correlation_id=CONVERSATION, tool="place_order")
    (asked_for,) = {e.input_hash for e in log if e.input == json.loads(loops.CAVIAR.arguments)}
    caviar = [e for e in log if e.input_hash == asked_for]
    assert [e.status for e in caviar] == [
        "approval_requested", "approved", "approval_used", "started", "executed", "cached",
    ]  # fmt: skip
    assert "approved by alice" in (caviar[1].rejection_reason or "")


def test_reject_in_the_sdk_tells_the_model_who_refused_and_why(tmp_path: Path) -> None:
    shop, db = loops.make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with dar.session(CONVERSATION):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                agent = agent_for(client, openai_agents.function_tools(rt), "responses")
                result = await agents.Runner.run(agent, "order caviar")
                interrupted_on_the_caviar(result)
                saved = result.to_state().to_string()
            # The person decides later, in another process: a runtime and an agent of its own.
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                agent = agent_for(client, openai_agents.function_tools(rt), "responses")
                state = await agents.RunState.from_string(agent, saved)
                (item,) = state.get_interruptions()
                await openai_agents.reject(rt, state, item, by="bob", reason=BUDGET)
                resumed = await agents.Runner.run(agent, state)
        assert resumed.final_output == loops.APPROVED
        await client.close()

    with ModelServer(loops.APPROVAL) as server:
        asyncio.run(main(server))
    assert shop.ran == loops.RAN_APPROVED - Counter({"order 1 caviar": 1})
    told = [t for t in tool_results(server, "responses") if BUDGET in t]
    assert told and told[0].startswith(
        f"Refused by the rule orders_checked: denied by bob: {BUDGET}. Nothing was done."
    )
    with Runtime(db) as rt:
        (denied,) = rt.events(correlation_id=CONVERSATION, status="denied")
        assert rt.approvals("denied")[0].decided_by == "bob"
    assert denied.rejection_reason is not None and "denied by bob" in denied.rejection_reason


def test_the_sdk_approval_alone_runs_nothing(tmp_path: Path) -> None:
    shop, db = loops.make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(loops.APPROVAL) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
            agent = agent_for(client, openai_agents.function_tools(rt), "chat")
            result = agents.Runner.run_sync(agent, "order caviar")
            state = result.to_state()
            state.approve(interrupted_on_the_caviar(result))  # no grant in dar
            agents.Runner.run_sync(agent, state)
            assert len(rt.approvals("pending")) == 1
    assert shop.ran == loops.RAN_APPROVED - Counter({"order 1 caviar": 1})
    assert any(t.startswith("Waiting for a person") for t in tool_results(server, "chat"))


def test_arguments_that_are_not_json_stop_the_run_and_dar_refuses_them_once_approved(
    tmp_path: Path,
) -> None:
    shop, db = loops.make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer([[BROKEN], loops.APPROVED]) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
            agent = agent_for(client, openai_agents.function_tools(rt), "chat")
            result = agents.Runner.run_sync(agent, "order caviar")
            (item,) = result.interruptions  # the SDK's own: it cannot read the arguments
            state = result.to_state()
            assert openai_agents.approve(rt, state, item, by="alice") is None
            assert agents.Runner.run_sync(agent, state).final_output == loops.APPROVED
            assert rt.approvals() == [] and not shop.ran
    (told,) = tool_results(server, "chat")
    assert told.startswith("Refused: at $") and "invalid JSON" in told


def test_approval_example_runs(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    tea = ToolCall("place_order", '{"item": "tea", "quantity": 2}')
    with ModelServer([[tea, loops.CAVIAR], loops.APPROVED]) as server:
        env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "test"}
        done = run_example("openai_agents_approval.py", env, db, stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(loops.APPROVED + "\n")
    assert done.stdout.count("supplier: ordering 1 x caviar") == 1
    with Runtime(f"sqlite:///{db}") as rt:
        (used,) = rt.approvals("used")
    assert used.decided_by == "manager" and used.reason == "caviar needs a manager"


def test_approve_does_not_guess_between_two_sessions_waiting_for_the_same_call(
    tmp_path: Path,
) -> None:
    @dar.tool(effect=dar.Effect.MUTATE_EXTERNAL, scope="session", approval=True)
    def place_order(item: str, quantity: int) -> str:
        """Order goods from the supplier.

        Args:
            item: What to order.
            quantity: How many units.
        """
        return "placed"

    with ModelServer([[loops.CAVIAR]]) as server:  # the model asks for it every time
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with Runtime(f"sqlite:///{tmp_path / 'a.db'}", tools=[place_order]) as rt:
            agent = agent_for(client, openai_agents.function_tools(rt), "chat")
            for session in ("conv-1", "conv-2"):  # the same call, under a key of each session
                with dar.session(session):
                    result = agents.Runner.run_sync(agent, "order caviar")
            with pytest.raises(ConfigurationError, match="2 pending requests are for this very"):
                openai_agents.approve(rt, result.to_state(), result.interruptions[0], by="alice")
            assert len(rt.approvals("pending")) == 2
