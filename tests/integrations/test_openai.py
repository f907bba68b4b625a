"""dar.integrations.openai with the real openai client, against the local model server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionUserMessageParam,
)
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
)

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer, ToolCall
from dar.integrations import openai as dar_openai
from dar.speculate import Branch
from tests.support.couriers import ORDER, ZONE
from tests.support.couriers import World as Couriers
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


# --- durable(client): the model calls of a durable run, journaled ------------------------------

STREAMS = [("chat", False), ("chat", True), ("responses", False), ("responses", True)]
STREAM_IDS = ["chat", "chat-stream", "responses", "responses-stream"]
#: What the resumed process passes that the crashed one did not: how the request travels.
TRANSPORT = {"timeout": 30.0, "extra_headers": {"x-attempt": "2"}, "extra_query": {"a": "2"}}


def durable_client(server: ModelServer) -> Any:
    return dar_openai.durable(
        openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    )


def adurable_client(server: ModelServer) -> Any:
    return dar_openai.durable(
        openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    )


def asked(w: World, api: str, stream: bool, history: list[Any]) -> dict[str, Any]:
    """The keyword arguments of one model call, as a user's loop writes them."""
    tools = dar_openai.tools(w.rt, api=cast("dar_openai.Api", api))
    said: dict[str, Any] = {"messages": history} if api == "chat" else {"input": history}
    if stream and api == "chat":
        said |= {"stream": True, "stream_options": {"include_usage": True}}
    elif stream:
        said |= {"stream": True}
    return {"model": w.model, "tools": tools, **said, **w.transport}


def whole_turn(api: str, chunks: list[Any]) -> Any:
    """A streamed turn, put together as the SDK's own helpers do."""
    if api == "chat":
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
        for chunk in chunks:
            state.handle_chunk(chunk)
        return state.get_final_completion()
    assert chunks[-1].type == "response.completed"
    return chunks[-1].response


def said_back(turn: Any) -> list[Any]:
    """What of a model turn goes back into the conversation."""
    if isinstance(turn, Response):
        return list(turn.output)
    return [turn.choices[0].message]


def answer(turn: Any) -> str | None:
    if isinstance(turn, Response):
        return turn.output_text
    return turn.choices[0].message.content  # type: ignore[no-any-return]


@dar.agent
def durable_shop(api: str, stream: bool) -> str | None:
    """The shop conversation as a durable agent: a user's own loop, on the durable client."""
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    history: list[Any] = [USER]
    while True:
        create = w.client.chat.completions.create if api == "chat" else w.client.responses.create
        if stream:
            with create(**asked(w, api, stream, history)) as chunks:
                got = list(chunks)
            w.turned(got)
            turn = whole_turn(api, got)
        else:
            turn = create(**asked(w, api, stream, history))
            w.turned(turn)
        replies = dar_openai.run_tool_calls(rt, turn, correlation_id=CONVERSATION)
        if not replies:
            return answer(turn)
        history += [*said_back(turn), *replies]


@dar.agent
async def adurable_shop(api: str, stream: bool) -> str | None:
    w = WORLD.get()
    rt = cast("AsyncRuntime", w.rt)
    history: list[Any] = [USER]
    while True:
        create = w.client.chat.completions.create if api == "chat" else w.client.responses.create
        if stream:
            async with await create(**asked(w, api, stream, history)) as chunks:
                got = [chunk async for chunk in chunks]
            w.turned(got)
            turn = whole_turn(api, got)
        else:
            turn = await create(**asked(w, api, stream, history))
            w.turned(turn)
        replies = await dar_openai.arun_tool_calls(rt, turn, correlation_id=CONVERSATION)
        if not replies:
            return answer(turn)
        history += [*said_back(turn), *replies]


def check_sdk_types(api: str, stream: bool, turns: list[Any]) -> None:
    """Every turn the loop got is the SDK's own type, replayed or live."""
    for turn in turns:
        if not stream:
            assert isinstance(turn, ChatCompletion if api == "chat" else Response)
        elif api == "chat":
            assert all(isinstance(c, ChatCompletionChunk) for c in turn)
        else:
            assert isinstance(turn[0], ResponseCreatedEvent)
            assert isinstance(turn[-1], ResponseCompletedEvent)


@pytest.mark.parametrize(("api", "stream"), STREAMS, ids=STREAM_IDS)
def test_a_crashed_durable_run_resumes_without_asking_the_model_again(
    tmp_path: Path, api: str, stream: bool
) -> None:
    with ModelServer(script(text_arguments=True)) as reference:
        shop = make_shop()
        with (
            Runtime(f"sqlite:///{tmp_path / 'whole.db'}", tools=shop.tools, rules=shop.rules) as rt,
            world(durable_client(reference), rt) as whole,
        ):
            done = rt.start(durable_shop, CONVERSATION, api, stream)
    assert (done.status, done.output) == ("finished", ANSWER)

    shop = make_shop()
    with (
        ModelServer(script(text_arguments=True)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(
            durable_client(server), rt, crash_after=CRASH_AFTER, after_crash=TRANSPORT
        ) as crashed,
    ):
        resumed = crash_and_resume(rt, durable_shop, api, stream)
        (run,) = rt.runs()
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    check_handler_ran_once(shop)
    check_resumed(server, reference, run, crashed, whole)
    check_sdk_types(api, stream, crashed.turns)


@pytest.mark.parametrize(("api", "stream"), STREAMS, ids=STREAM_IDS)
def test_a_crashed_async_durable_run_resumes_without_asking_the_model_again(
    tmp_path: Path, api: str, stream: bool
) -> None:
    async def whole_run(server: ModelServer) -> tuple[dar.RunResult, World]:
        shop = make_shop(asynchronous=True)
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'whole.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(adurable_client(server), rt) as w:
                return await rt.start(adurable_shop, CONVERSATION, api, stream), w

    async def crashed_run(server: ModelServer) -> tuple[dar.RunResult, dar.RunRecord, World]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(
                adurable_client(server), rt, crash_after=CRASH_AFTER, after_crash=TRANSPORT
            ) as w:
                resumed = await acrash_and_resume(rt, adurable_shop, api, stream)
                (run,) = await rt.runs()
                return resumed, run, w

    with ModelServer(script(text_arguments=True)) as reference:
        done, whole = asyncio.run(whole_run(reference))
    assert (done.status, done.output) == ("finished", ANSWER)
    shop = make_shop(asynchronous=True)
    with ModelServer(script(text_arguments=True)) as server:
        resumed, run, crashed = asyncio.run(crashed_run(server))
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    check_handler_ran_once(shop)
    check_resumed(server, reference, run, crashed, whole)
    check_sdk_types(api, stream, crashed.turns)


@pytest.mark.parametrize(("api", "stream"), STREAMS, ids=STREAM_IDS)
def test_a_run_resumed_with_another_request_fails_as_a_divergence_without_asking(
    tmp_path: Path, api: str, stream: bool
) -> None:
    shop = make_shop()
    with (
        ModelServer(script(text_arguments=True)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(durable_client(server), rt, crash_after=1) as w,
    ):
        with pytest.raises(KeyboardInterrupt):
            rt.start(durable_shop, CONVERSATION, api, stream, lease=LEASE)
        w.model = "another-model"  # the code changed between the crash and the resume
        time.sleep(LEASE)
        (resumed,) = rt.resume(lease=LEASE)
    assert resumed.status == "failed"
    assert resumed.error is not None and resumed.error.startswith("ReplayDivergence")
    assert "another-model" in resumed.error
    assert len(server.requests) == 1  # the diverging step was not asked
    assert not shop.ran


@pytest.mark.parametrize(("api", "stream"), STREAMS, ids=STREAM_IDS)
def test_an_async_run_resumed_with_another_request_fails_as_a_divergence_without_asking(
    tmp_path: Path, api: str, stream: bool
) -> None:
    shop = make_shop(asynchronous=True)

    async def main(server: ModelServer) -> dar.RunResult:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(adurable_client(server), rt, crash_after=1) as w:
                with pytest.raises(KeyboardInterrupt):
                    await rt.start(adurable_shop, CONVERSATION, api, stream, lease=LEASE)
                w.model = "another-model"
                time.sleep(LEASE)
                (resumed,) = await rt.resume(lease=LEASE)
                return resumed

    with ModelServer(script(text_arguments=True)) as server:
        resumed = asyncio.run(main(server))
    assert resumed.status == "failed"
    assert resumed.error is not None and resumed.error.startswith("ReplayDivergence")
    assert len(server.requests) == 1
    assert not shop.ran


def without_times(value: Any) -> Any:
    """An object's JSON less the timestamps the model server writes at each answer."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in ("created", "created_at")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def check_same(plain: Any, durable: Any) -> None:
    """The durable client's answer is the client's: the same type, the same content."""
    assert type(durable) is type(plain)
    if isinstance(plain, (openai.Stream, openai.AsyncStream)):
        return
    assert without_times(durable.to_dict()) == without_times(plain.to_dict())


def test_outside_a_run_the_durable_client_is_the_client(tmp_path: Path) -> None:
    with ModelServer(["Hello."]) as server:
        plain = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        client = dar_openai.durable(plain)
        assert isinstance(client, openai.OpenAI)
        assert dar_openai.durable(client) is client
        assert (client.base_url, client.max_retries, client.models) == (
            plain.base_url,
            plain.max_retries,
            plain.models,
        )
        assert isinstance(client.with_options(timeout=5), openai.OpenAI)
        for api, stream in STREAMS:
            answers = []
            for each in (plain, client):
                create: Any = (
                    each.chat.completions.create if api == "chat" else each.responses.create
                )
                kwargs: dict[str, Any] = {"model": "m", "stream": stream}
                kwargs |= {"messages": [USER]} if api == "chat" else {"input": "Hi."}
                got = create(**kwargs)
                answers.append((got, list(got) if stream else []))
            (plain_answer, plain_chunks), (durable_answer, durable_chunks) = answers
            check_same(plain_answer, durable_answer)
            assert len(plain_chunks) == len(durable_chunks)
            for a, b in zip(plain_chunks, durable_chunks, strict=True):
                check_same(a, b)
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 2 * len(STREAMS)
    assert bodies[0::2] == bodies[1::2]


def test_outside_a_run_the_durable_async_client_is_the_client(tmp_path: Path) -> None:
    async def main(server: ModelServer) -> None:
        plain = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        client = dar_openai.durable(plain)
        assert isinstance(client, openai.AsyncOpenAI)
        for api, stream in STREAMS:
            answers = []
            for each in (plain, client):
                create: Any = (
                    each.chat.completions.create if api == "chat" else each.responses.create
                )
                kwargs: dict[str, Any] = {"model": "m", "stream": stream}
                kwargs |= {"messages": [USER]} if api == "chat" else {"input": "Hi."}
                got = await create(**kwargs)
                answers.append((got, [c async for c in got] if stream else []))
            (plain_answer, plain_chunks), (durable_answer, durable_chunks) = answers
            check_same(plain_answer, durable_answer)
            for a, b in zip(plain_chunks, durable_chunks, strict=True):
                check_same(a, b)
        await client.close()

    with ModelServer(["Hello."]) as server:
        asyncio.run(main(server))
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 2 * len(STREAMS)
    assert bodies[0::2] == bodies[1::2]


@dar.agent
def ask_once(use_async_client: bool) -> None:
    """One model call, on whichever client the world has (sync in an AsyncRuntime run, or
    async in a blocking one)."""
    w = WORLD.get()
    if use_async_client:
        asyncio.run(w.client.chat.completions.create(model="m", messages=[USER]))
    else:
        w.client.chat.completions.create(model="m", messages=[USER])


def test_a_client_of_the_other_kind_than_the_run_is_a_type_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    with ModelServer(["Hello."]) as server:
        with Runtime(db) as rt, world(adurable_client(server), rt):
            blocking = rt.start(ask_once, "blocking", True)

        async def main() -> dar.RunResult:
            async with AsyncRuntime(db) as art:
                with world(durable_client(server), art):
                    return await art.start(ask_once, "async", False)

        in_async = asyncio.run(main())
    assert blocking.status == in_async.status == "failed"
    assert blocking.error == (
        "TypeError: model openai.chat.completions: an async call inside a blocking Runtime run"
    )
    assert in_async.error == (
        "TypeError: model openai.chat.completions: a blocking call inside an AsyncRuntime run: "
        "await it"
    )
    assert not server.requests


def completed(api: str, chunks: Any) -> Any:
    """Read a stream only up to the chunk that completes the turn, as loops often do."""
    if api == "responses":
        return next(e.response for e in chunks if e.type == "response.completed")
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
        if chunk.choices and chunk.choices[0].finish_reason:
            break  # the usage chunk that follows is never read
    return state.get_final_completion()


@dar.agent
def leaves_each_stream_at_its_end(api: str) -> str | None:
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    history: list[Any] = [USER]
    while True:
        create = w.client.chat.completions.create if api == "chat" else w.client.responses.create
        with create(**asked(w, api, True, history)) as chunks:
            turn = completed(api, chunks)
        w.turned(turn)
        replies = dar_openai.run_tool_calls(rt, turn, correlation_id=CONVERSATION)
        if not replies:
            return answer(turn)
        history += [*said_back(turn), *replies]


@dar.agent
async def aleaves_each_stream_at_its_end(api: str) -> str | None:
    w = WORLD.get()
    rt = cast("AsyncRuntime", w.rt)
    history: list[Any] = [USER]
    while True:
        create = w.client.chat.completions.create if api == "chat" else w.client.responses.create
        async with await create(**asked(w, api, True, history)) as chunks:
            got = []
            async for chunk in chunks:
                got.append(chunk)
                if (
                    chunk.type == "response.completed"
                    if api == "responses"
                    else (chunk.choices and chunk.choices[0].finish_reason)
                ):
                    break
        turn = completed(api, got)
        w.turned(turn)
        replies = await dar_openai.arun_tool_calls(rt, turn, correlation_id=CONVERSATION)
        if not replies:
            return answer(turn)
        history += [*said_back(turn), *replies]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_stream_left_at_the_chunk_that_completes_it_is_recorded(tmp_path: Path, api: str) -> None:
    shop = make_shop()
    with (
        ModelServer(script(text_arguments=True)) as server,
        Runtime(f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules) as rt,
        world(durable_client(server), rt, crash_after=CRASH_AFTER),
    ):
        resumed = crash_and_resume(rt, leaves_each_stream_at_its_end, api)
        (run,) = rt.runs()
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    assert len(server.requests) == 3
    check_handler_ran_once(shop)
    assert (run.tokens, run.tokens_saved) == (6, 4)  # the usage chunk read ahead counts


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_an_async_stream_left_at_the_chunk_that_completes_it_is_recorded(
    tmp_path: Path, api: str
) -> None:
    shop = make_shop(asynchronous=True)

    async def main(server: ModelServer) -> tuple[dar.RunResult, dar.RunRecord]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(adurable_client(server), rt, crash_after=CRASH_AFTER):
                resumed = await acrash_and_resume(rt, aleaves_each_stream_at_its_end, api)
                (run,) = await rt.runs()
                return resumed, run

    with ModelServer(script(text_arguments=True)) as server:
        resumed, run = asyncio.run(main(server))
    assert (resumed.status, resumed.output) == ("finished", ANSWER)
    assert len(server.requests) == 3
    check_handler_ran_once(shop)
    assert (run.tokens, run.tokens_saved) == (6, 4)


def _book(courier: str) -> ToolCall:
    return ToolCall(
        "book_courier", json.dumps({"order_id": ORDER, "courier": courier, "zone": ZONE})
    )


def test_the_proposer_turns_n_sampled_tool_calls_into_distinct_candidates() -> None:
    # Four samples: the same booking twice (keys in another order), another, and a text.
    samples: list[Any] = [
        [_book("cheapo")],
        [
            ToolCall(
                "book_courier", json.dumps({"zone": ZONE, "courier": "cheapo", "order_id": ORDER})
            )
        ],
        [_book("andes"), ToolCall("notify_customer", '{"order_id": "ORD-7", "courier": "andes"}')],
        "I would not book anything.",
    ]
    world = Couriers()
    with ModelServer(samples) as server, world.runtime() as rt:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        tools = dar_openai.tools(rt, api="chat")
        propose = dar_openai.proposer(
            client, model="test-model", messages=[{"role": "user", "content": "ship it"}], n=4,
            tools=tools,
        )  # fmt: skip
        found = propose(Branch("c", ()))
        assert [(c.tool, json.loads(str(c.arguments))["courier"]) for c in found] == [
            ("book_courier", "cheapo"), ("book_courier", "andes"), ("notify_customer", "andes"),
        ]  # fmt: skip
        # From a branch, the model reads each step so far as its tool call and the reply.
        quoted = rt.speculate("c", propose=lambda b: [] if b.path else [found[1]],
                              score=lambda b: 0.5, budget=1, depth=1)  # fmt: skip
        propose(Branch("c", quoted.path))
        [body] = server.bodies("/chat/completions")[1:]
        assert body["n"] == 4 and body["tools"] == tools
        assert body["messages"][-1]["role"] == "tool"
        assert "Dry run, nothing was done" in body["messages"][-1]["content"]
    assert world.effects == 0


def test_the_judge_scores_a_branch_and_names_an_answer_without_a_number() -> None:
    with ModelServer(["0.75", "I cannot tell."]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        judge = dar_openai.llm_judge(client, model="test-model", goal="ship ORD-7 cheaply")
        assert judge(Branch("c", ())) == 0.75
        with pytest.raises(ValueError, match="I cannot tell"):
            judge(Branch("c", ()))
        assert (
            "ship ORD-7 cheaply" in server.bodies("/chat/completions")[0]["messages"][1]["content"]
        )
