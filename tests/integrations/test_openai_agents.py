"""dar.integrations.openai_agents with the real Agents SDK (Agent + Runner) over the real
openai client, against the local model server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import agents
import openai
import pytest

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer
from dar.integrations import openai_agents
from tests.support.shop import (
    ANSWER,
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


def agent_for(client: openai.AsyncOpenAI, tools: list[Any], api: str) -> agents.Agent[Any]:
    model: agents.Model
    if api == "chat":
        model = agents.OpenAIChatCompletionsModel(model="test-model", openai_client=client)
    else:
        model = agents.OpenAIResponsesModel(model="test-model", openai_client=client)
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
