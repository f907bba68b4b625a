"""dar.integrations.openai with the real openai client, against the local model server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionUserMessageParam
from openai.types.responses import FunctionToolParam

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer
from dar.integrations import openai as dar_openai
from tests.support.shop import (
    ANSWER,
    CONVERSATION,
    Shop,
    calls_per_run,
    check_handler_ran_once,
    check_log,
    check_refusal_seen,
    make_shop,
    missing_sdk_error,
    run_example,
    script,
)

USER: ChatCompletionUserMessageParam = {
    "role": "user",
    "content": "Order 2 tea, 50 gold and a coffee.",
}


def chat_loop(client: openai.OpenAI, rt: Runtime, *, stream: bool = False) -> str | None:
    tools = cast("list[ChatCompletionFunctionToolParam]", dar_openai.tools(rt, api="chat"))
    messages: list[Any] = [USER]
    while True:
        if stream:
            with client.chat.completions.stream(
                model="test-model", messages=messages, tools=tools
            ) as events:
                completion: Any = events.get_final_completion()
        else:
            completion = client.chat.completions.create(
                model="test-model", messages=messages, tools=tools
            )
        replies = dar_openai.run_tool_calls(rt, completion, correlation_id=CONVERSATION)
        if not replies:
            return completion.choices[0].message.content  # type: ignore[no-any-return]
        messages += [completion.choices[0].message, *replies]


def responses_loop(client: openai.OpenAI, rt: Runtime) -> str:
    tools = cast("list[FunctionToolParam]", dar_openai.tools(rt, api="responses"))
    items: list[Any] = [USER]
    while True:
        response = client.responses.create(model="test-model", input=items, tools=tools)
        outputs = dar_openai.run_tool_calls(rt, response, correlation_id=CONVERSATION)
        if not outputs:
            return response.output_text
        items += [*response.output, *outputs]


async def achat_loop(client: openai.AsyncOpenAI, rt: AsyncRuntime) -> str | None:
    tools = cast("list[ChatCompletionFunctionToolParam]", dar_openai.tools(rt, api="chat"))
    messages: list[Any] = [USER]
    while True:
        completion = await client.chat.completions.create(
            model="test-model", messages=messages, tools=tools
        )
        # No correlation id given: the dar.session() around the loop supplies it.
        replies = await dar_openai.arun_tool_calls(rt, completion)
        if not replies:
            return completion.choices[0].message.content
        messages += [completion.choices[0].message, *replies]


async def aresponses_loop(client: openai.AsyncOpenAI, rt: AsyncRuntime) -> str:
    tools = cast("list[FunctionToolParam]", dar_openai.tools(rt, api="responses"))
    items: list[Any] = [USER]
    while True:
        response = await client.responses.create(model="test-model", input=items, tools=tools)
        outputs = await dar_openai.arun_tool_calls(rt, response, correlation_id=CONVERSATION)
        if not outputs:
            return response.output_text
        items += [*response.output, *outputs]


def chat_results(server: ModelServer) -> list[str]:
    """Every tool result the model was sent over Chat Completions."""
    return [
        m["content"]
        for body in server.bodies("/chat/completions")
        for m in body["messages"]
        if m.get("role") == "tool"
    ]


def responses_results(server: ModelServer) -> list[str]:
    return [
        i["output"]
        for body in server.bodies("/responses")
        for i in body["input"]
        if i.get("type") == "function_call_output"
    ]


def check_results(results: list[str]) -> None:
    check_refusal_seen(results)
    assert any("launch_rocket" in r for r in results), results


def check_conversation(
    shop: Shop, events: list[dar.Event], results: list[str], *, broken_json: bool = True
) -> None:
    calls = calls_per_run(text_arguments=broken_json)
    check_handler_ran_once(shop)
    check_log(events, calls=calls)
    check_results(results)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_chat_completions_sync(tmp_path: Path, stream: bool) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    # The SDK's stream helper itself parses the arguments of a strict tool (and strict mode
    # means the real API never sends broken JSON), so the streamed script has none.
    broken_json = not stream
    with ModelServer(script(text_arguments=broken_json)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        for _ in range(2):  # the whole conversation twice, as after a crash and a retry
            with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
                assert chat_loop(client, rt, stream=stream) == ANSWER
    with Runtime(db) as rt:
        events = rt.events(correlation_id=CONVERSATION)
    check_conversation(shop, events, chat_results(server), broken_json=broken_json)
    # What the model sent back in each run was the same, down to the duplicate's answer.
    first, second = server.bodies("/chat/completions")[2], server.bodies("/chat/completions")[5]
    assert first["messages"] == second["messages"]


def test_responses_sync(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(script(text_arguments=True)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        for _ in range(2):
            with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
                assert responses_loop(client, rt) == ANSWER
    with Runtime(db) as rt:
        events = rt.events(correlation_id=CONVERSATION)
    check_conversation(shop, events, responses_results(server))
    outputs = server.bodies("/responses")[1]["input"]
    assert [i["call_id"] for i in outputs if i.get("type") == "function_call_output"] == [
        f"call_0_{n}" for n in range(6)
    ]


def test_chat_completions_async(tmp_path: Path) -> None:
    shop, db = make_shop(asynchronous=True), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        for _ in range(2):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                with dar.session(CONVERSATION):
                    assert await achat_loop(client, rt) == ANSWER
        await client.close()

    with ModelServer(script(text_arguments=True)) as server:
        asyncio.run(main(server))
    with Runtime(db) as rt:
        events = rt.events(correlation_id=CONVERSATION)
    check_conversation(shop, events, chat_results(server))


def test_responses_async(tmp_path: Path) -> None:
    shop, db = make_shop(asynchronous=True), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        for _ in range(2):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                assert await aresponses_loop(client, rt) == ANSWER
        await client.close()

    with ModelServer(script(text_arguments=True)) as server:
        asyncio.run(main(server))
    with Runtime(db) as rt:
        events = rt.events(correlation_id=CONVERSATION)
    check_conversation(shop, events, responses_results(server))


def test_a_message_without_tool_calls_needs_nothing_sent(tmp_path: Path) -> None:
    shop = make_shop()
    with ModelServer(["Hello."]) as server, Runtime(f"sqlite:///{tmp_path / 'a.db'}") as rt:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        completion = client.chat.completions.create(model="m", messages=[USER])
        assert dar_openai.run_tool_calls(rt, completion) == []
        assert dar_openai.run_tool_calls(rt, completion.choices[0].message) == []
    assert not shop.ran


def test_tools_and_wrong_objects(tmp_path: Path) -> None:
    shop = make_shop()
    with Runtime(f"sqlite:///{tmp_path / 'a.db'}", tools=shop.tools, rules=shop.rules) as rt:
        assert dar_openai.tools(rt, api="chat")[0]["function"]["name"] == "place_order"
        assert dar_openai.tools(rt, api="responses")[0]["name"] == "place_order"
        with pytest.raises(ValueError, match="chat"):
            dar_openai.tools(rt, api="assistants")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ChatCompletion"):
            dar_openai.run_tool_calls(rt, {"choices": []})


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("openai", "openai")
    assert said == (
        "this integration needs openai: pip install openai (or install "
        "durable-agent-runtime with its [openai] extra: pip install '.[openai]' in a checkout)"
    )


def test_example_runs(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    with ModelServer(script(text_arguments=True)) as server:
        env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "test"}
        done = run_example("openai_loop.py", env, db)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    assert done.stdout.count("supplier: ordering") == 2  # tea once (asked twice), coffee once
    with Runtime(f"sqlite:///{db}") as rt:
        executed = rt.events(status="executed")
    assert sorted(e.input["item"] for e in executed) == ["coffee", "tea"]
    check_refusal_seen(chat_results(server))
