"""dar.integrations.anthropic with the real anthropic client, against the local model server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast

import anthropic
import pytest
from anthropic.lib.streaming import ParsedMessageStopEvent
from anthropic.types import (
    Message,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    ToolParam,
    ToolUseBlock,
)

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer
from dar.integrations import anthropic as dar_anthropic
from tests.support.durable import (
    CRASH_AFTER,
    LEASE,
    WORLD,
    World,
    acrash_and_resume,
    check_resumed,
    crash_and_resume,
    world,
)
from tests.support.shop import (
    ANSWER,
    CONVERSATION,
    calls_per_run,
    check_handler_ran_once,
    check_log,
    check_refusal_seen,
    make_shop,
    missing_sdk_error,
    run_example,
    script,
    tool_text,
)

USER = {"role": "user", "content": "Order 2 tea, 50 gold and a coffee."}
CALLS = calls_per_run(text_arguments=False)  # tool_use input is an object: no broken JSON


def loop(client: anthropic.Anthropic, rt: Runtime) -> str:
    messages: list[Any] = [USER]
    while True:
        message = client.messages.create(
            model="test-model",
            max_tokens=256,
            messages=messages,
            tools=cast("list[ToolParam]", dar_anthropic.tools(rt)),
        )
        if message.stop_reason != "tool_use":
            return "".join(b.text for b in message.content if b.type == "text")
        reply = dar_anthropic.run_tool_uses(rt, message, correlation_id=CONVERSATION)
        messages += [{"role": "assistant", "content": message.content}, reply]


async def aloop(client: anthropic.AsyncAnthropic, rt: AsyncRuntime) -> str:
    messages: list[Any] = [USER]
    while True:
        message = await client.messages.create(
            model="test-model",
            max_tokens=256,
            messages=messages,
            tools=cast("list[ToolParam]", dar_anthropic.tools(rt)),
        )
        if message.stop_reason != "tool_use":
            return "".join(b.text for b in message.content if b.type == "text")
        reply = await dar_anthropic.arun_tool_uses(rt, message)  # id from dar.session()
        messages += [{"role": "assistant", "content": message.content}, reply]


def tool_results(server: ModelServer) -> list[dict[str, Any]]:
    """Every tool_result block the model was sent."""
    return [
        block
        for body in server.bodies("/v1/messages")
        for m in body["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    ]


def check_conversation(server: ModelServer, db: str, shop: Any) -> None:
    check_handler_ran_once(shop)
    with Runtime(db) as rt:
        check_log(rt.events(correlation_id=CONVERSATION), calls=CALLS)
    results = tool_results(server)
    check_refusal_seen([tool_text(r["content"]) for r in results])
    # Anthropic has an error flag: refusals carry it, real outputs do not.
    flags = [(r["tool_use_id"], r["is_error"]) for r in results[: CALLS - 1]]
    assert flags == [
        ("call_0_0", False),
        ("call_0_1", False),
        ("call_0_2", True),
        ("call_0_3", True),
        ("call_0_4", True),
    ]


def test_messages_sync(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(script(text_arguments=False)) as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
        for _ in range(2):
            with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
                assert loop(client, rt) == ANSWER
    check_conversation(server, db, shop)


def test_messages_async(tmp_path: Path) -> None:
    shop, db = make_shop(asynchronous=True), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
        for _ in range(2):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                with dar.session(CONVERSATION):
                    assert await aloop(client, rt) == ANSWER
        await client.close()

    with ModelServer(script(text_arguments=False)) as server:
        asyncio.run(main(server))
    check_conversation(server, db, shop)


def test_tools_and_wrong_objects(tmp_path: Path) -> None:
    shop = make_shop()
    with Runtime(f"sqlite:///{tmp_path / 'a.db'}", tools=shop.tools, rules=shop.rules) as rt:
        (described,) = dar_anthropic.tools(rt)
        assert described["name"] == "place_order"
        assert described["input_schema"]["required"] == ["item", "quantity"]
        with pytest.raises(TypeError, match="Message"):
            dar_anthropic.run_tool_uses(rt, {"content": []})


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("anthropic", "anthropic")
    assert said == (
        "this integration needs anthropic: pip install anthropic (or install "
        "durable-agent-runtime with its [anthropic] extra: pip install '.[anthropic]' "
        "in a checkout)"
    )


def test_example_runs(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    with ModelServer(script(text_arguments=False)) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "test"}
        done = run_example("anthropic_loop.py", env, db)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    assert done.stdout.count("supplier: ordering") == 2  # tea once (asked twice), coffee once
    with Runtime(f"sqlite:///{db}") as rt:
        executed = rt.events(status="executed")
    assert sorted(e.input["item"] for e in executed) == ["coffee", "tea"]
    check_refusal_seen([tool_text(r["content"]) for r in tool_results(server)])


# --- durable(client): the model calls of a durable run, journaled ------------------------------

#: How the loop asks the model: ``messages.create``, ``create(stream=True)``, ``stream()``.
MODES = ["create", "create-stream", "stream"]
#: What the resumed process passes that the crashed one did not: how the request travels.
TRANSPORT = {"timeout": 30.0, "extra_headers": {"x-attempt": "2"}, "extra_query": {"a": "2"}}


def durable_client(server: ModelServer) -> Any:
    return dar_anthropic.durable(
        anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
    )


def adurable_client(server: ModelServer) -> Any:
    return dar_anthropic.durable(
        anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
    )


def asked(w: World, history: list[Any]) -> dict[str, Any]:
    tools = dar_anthropic.tools(w.rt)
    return {"model": w.model, "max_tokens": 256, "messages": history, "tools": tools, **w.transport}


def whole_message(events: list[Any]) -> Message:
    """The message a ``create(stream=True)`` streamed, put together from its raw events."""
    message: Message = events[0].message.model_copy(deep=True)
    inputs: dict[int, str] = {}
    for event in events[1:]:
        if event.type == "content_block_start":
            message.content.append(event.content_block.model_copy(deep=True))
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            cast("TextBlock", message.content[event.index]).text += event.delta.text
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            inputs[event.index] = inputs.get(event.index, "") + event.delta.partial_json
        elif event.type == "content_block_stop" and event.index in inputs:
            block = cast("ToolUseBlock", message.content[event.index])
            block.input = json.loads(inputs[event.index])
        elif event.type == "message_delta":
            message.stop_reason = event.delta.stop_reason
            message.usage.output_tokens = event.usage.output_tokens
    return message


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@dar.agent
def durable_shop(mode: str) -> str:
    """The shop conversation as a durable agent: a user's own loop, on the durable client."""
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    history: list[Any] = [USER]
    while True:
        if mode == "create":
            message = w.client.messages.create(**asked(w, history))
            w.turned(message)
        elif mode == "create-stream":
            with w.client.messages.create(**asked(w, history), stream=True) as events:
                got = list(events)
            w.turned(got)
            message = whole_message(got)
        else:
            with w.client.messages.stream(**asked(w, history)) as stream:
                got = list(stream)
                message = stream.get_final_message()
            w.turned(got)
        if message.stop_reason != "tool_use":
            return text_of(message)
        reply = dar_anthropic.run_tool_uses(rt, message, correlation_id=CONVERSATION)
        history += [{"role": "assistant", "content": message.content}, reply]


@dar.agent
async def adurable_shop(mode: str) -> str:
    w = WORLD.get()
    rt = cast("AsyncRuntime", w.rt)
    history: list[Any] = [USER]
    while True:
        if mode == "create":
            message = await w.client.messages.create(**asked(w, history))
            w.turned(message)
        elif mode == "create-stream":
            async with await w.client.messages.create(**asked(w, history), stream=True) as events:
                got = [event async for event in events]
            w.turned(got)
            message = whole_message(got)
        else:
            async with w.client.messages.stream(**asked(w, history)) as stream:
                got = [event async for event in stream]
                message = await stream.get_final_message()
            w.turned(got)
        if message.stop_reason != "tool_use":
            return text_of(message)
        reply = await dar_anthropic.arun_tool_uses(rt, message, correlation_id=CONVERSATION)
        history += [{"role": "assistant", "content": message.content}, reply]


def check_sdk_types(mode: str, turns: list[Any]) -> None:
    """Every turn the loop got is the SDK's own type, replayed or live."""
    for turn in turns:
        if mode == "create":
            assert isinstance(turn, Message)
        elif mode == "create-stream":
            assert isinstance(turn[0], RawMessageStartEvent)
            assert isinstance(turn[-1], RawMessageStopEvent)
        else:  # the stream helper's events, made from the raw ones
            assert isinstance(turn[-1], ParsedMessageStopEvent)
            assert isinstance(turn[-1].message, Message)


@pytest.mark.parametrize("mode", MODES)
def test_a_crashed_durable_run_resumes_without_asking_the_model_again(
    tmp_path: Path, mode: str
) -> None:
    with ModelServer(script(text_arguments=False)) as reference:
        shop = make_shop()
        with (
            Runtime(f"sqlite:///{tmp_path / 'whole.db'}", tools=shop.tools, rules=shop.rules) as rt,
            world(durable_client(reference), rt) as whole,
        ):
            done = rt.start(durable_shop, CONVERSATION, mode)
    assert (done.status, done.output) == ("finished", ANSWER)

    shop = make_shop()
    with (
        ModelServer(script(text_arguments=False)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(
            durable_client(server), rt, crash_after=CRASH_AFTER, after_crash=TRANSPORT
        ) as crashed,
    ):
        resumed = crash_and_resume(rt, durable_shop, mode)
        (run,) = rt.runs()
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    check_handler_ran_once(shop)
    check_resumed(server, reference, run, crashed, whole)
    check_sdk_types(mode, crashed.turns)


@pytest.mark.parametrize("mode", MODES)
def test_a_crashed_async_durable_run_resumes_without_asking_the_model_again(
    tmp_path: Path, mode: str
) -> None:
    async def whole_run(server: ModelServer) -> tuple[dar.RunResult, World]:
        shop = make_shop(asynchronous=True)
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'whole.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(adurable_client(server), rt) as w:
                return await rt.start(adurable_shop, CONVERSATION, mode), w

    async def crashed_run(server: ModelServer) -> tuple[dar.RunResult, dar.RunRecord, World]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(
                adurable_client(server), rt, crash_after=CRASH_AFTER, after_crash=TRANSPORT
            ) as w:
                resumed = await acrash_and_resume(rt, adurable_shop, mode)
                (run,) = await rt.runs()
                return resumed, run, w

    with ModelServer(script(text_arguments=False)) as reference:
        done, whole = asyncio.run(whole_run(reference))
    assert (done.status, done.output) == ("finished", ANSWER)
    shop = make_shop(asynchronous=True)
    with ModelServer(script(text_arguments=False)) as server:
        resumed, run, crashed = asyncio.run(crashed_run(server))
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    check_handler_ran_once(shop)
    check_resumed(server, reference, run, crashed, whole)
    check_sdk_types(mode, crashed.turns)


@pytest.mark.parametrize("mode", MODES)
def test_a_run_resumed_with_another_request_fails_as_a_divergence_without_asking(
    tmp_path: Path, mode: str
) -> None:
    shop = make_shop()
    with (
        ModelServer(script(text_arguments=False)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(durable_client(server), rt, crash_after=1) as w,
    ):
        with pytest.raises(KeyboardInterrupt):
            rt.start(durable_shop, CONVERSATION, mode, lease=LEASE)
        w.model = "another-model"  # the code changed between the crash and the resume
        time.sleep(LEASE)
        (resumed,) = rt.resume(lease=LEASE)
    assert resumed.status == "failed"
    assert resumed.error is not None and resumed.error.startswith("ReplayDivergence")
    assert "another-model" in resumed.error
    assert len(server.requests) == 1  # the diverging step was not asked
    assert not shop.ran


@pytest.mark.parametrize("mode", MODES)
def test_an_async_run_resumed_with_another_request_fails_as_a_divergence_without_asking(
    tmp_path: Path, mode: str
) -> None:
    shop = make_shop(asynchronous=True)

    async def main(server: ModelServer) -> dar.RunResult:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(adurable_client(server), rt, crash_after=1) as w:
                with pytest.raises(KeyboardInterrupt):
                    await rt.start(adurable_shop, CONVERSATION, mode, lease=LEASE)
                w.model = "another-model"
                time.sleep(LEASE)
                (resumed,) = await rt.resume(lease=LEASE)
                return resumed

    with ModelServer(script(text_arguments=False)) as server:
        resumed = asyncio.run(main(server))
    assert resumed.status == "failed"
    assert resumed.error is not None and resumed.error.startswith("ReplayDivergence")
    assert len(server.requests) == 1
    assert not shop.ran


def test_outside_a_run_the_durable_client_is_the_client() -> None:
    with ModelServer(["Hello."]) as server:
        plain = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
        client = dar_anthropic.durable(plain)
        assert isinstance(client, anthropic.Anthropic)
        assert dar_anthropic.durable(client) is client
        assert (client.base_url, client.api_key, client.models) == (
            plain.base_url,
            plain.api_key,
            plain.models,
        )
        asked: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [USER]}
        created = [each.messages.create(**asked) for each in (plain, client)]
        assert type(created[0]) is type(created[1]) is Message
        assert created[0].to_dict() == created[1].to_dict()
        streams = [each.messages.create(**asked, stream=True) for each in (plain, client)]
        assert type(streams[0]) is type(streams[1]) is anthropic.Stream
        events = [[e.to_dict() for e in s] for s in streams]
        assert events[0] == events[1]
        managers = [each.messages.stream(**asked) for each in (plain, client)]
        assert type(managers[0]) is type(managers[1])
        finals = []
        for manager in managers:
            with manager as stream:
                finals.append(stream.get_final_message().to_dict())
        assert finals[0] == finals[1]
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 6
    assert bodies[0::2] == bodies[1::2]


def test_outside_a_run_the_durable_async_client_is_the_client() -> None:
    async def main(server: ModelServer) -> None:
        plain = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
        client = dar_anthropic.durable(plain)
        assert isinstance(client, anthropic.AsyncAnthropic)
        asked: dict[str, Any] = {"model": "m", "max_tokens": 16, "messages": [USER]}
        created = [await each.messages.create(**asked) for each in (plain, client)]
        assert created[0].to_dict() == created[1].to_dict()
        streams = [await each.messages.create(**asked, stream=True) for each in (plain, client)]
        assert type(streams[0]) is type(streams[1]) is anthropic.AsyncStream
        events = [[e.to_dict() async for e in streams[0]], [e.to_dict() async for e in streams[1]]]
        assert events[0] == events[1]
        finals = []
        for each in (plain, client):
            async with each.messages.stream(**asked) as stream:
                finals.append((await stream.get_final_message()).to_dict())
        assert finals[0] == finals[1]
        await client.close()

    with ModelServer(["Hello."]) as server:
        asyncio.run(main(server))
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 6
    assert bodies[0::2] == bodies[1::2]


@dar.agent
def leaves_each_stream_at_its_end() -> str:
    """Reads each ``create(stream=True)`` only up to its ``message_stop``, as loops often do."""
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    history: list[Any] = [USER]
    while True:
        got = []
        with w.client.messages.create(**asked(w, history), stream=True) as events:
            for event in events:
                got.append(event)
                if event.type == "message_stop":
                    break
        message = whole_message(got)
        w.turned(message)
        if message.stop_reason != "tool_use":
            return text_of(message)
        reply = dar_anthropic.run_tool_uses(rt, message, correlation_id=CONVERSATION)
        history += [{"role": "assistant", "content": message.content}, reply]


def test_a_stream_left_at_the_event_that_completes_it_is_recorded(tmp_path: Path) -> None:
    shop = make_shop()
    with (
        ModelServer(script(text_arguments=False)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(durable_client(server), rt, crash_after=CRASH_AFTER),
    ):
        resumed = crash_and_resume(rt, leaves_each_stream_at_its_end)
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    assert len(server.requests) == 3
    check_handler_ran_once(shop)
