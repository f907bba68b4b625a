"""dar.integrations.gemini with the real google-genai client, against the local model server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import pytest
from google import genai
from google.genai import types

import dar
from dar import AsyncRuntime, Effect, Runtime
from dar.demo.scripted_model import ModelServer, ToolCall, Turn
from dar.integrations import gemini as dar_gemini
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
)

REQUEST = "Order 2 tea, 50 gold and a coffee."
CALLS = calls_per_run(text_arguments=False)  # function call args are an object


def client_for(server: ModelServer) -> genai.Client:
    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=server.url))


def loop(client: genai.Client, rt: Runtime) -> str | None:
    config = types.GenerateContentConfig(tools=dar_gemini.tools(rt))
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        response = client.models.generate_content(
            model="test-model", contents=contents, config=config
        )
        if not response.function_calls:
            return response.text
        answers = dar_gemini.run_function_calls(rt, response, correlation_id=CONVERSATION)
        contents += [response.candidates[0].content, answers]  # type: ignore[index]


async def aloop(client: genai.Client, rt: AsyncRuntime) -> str | None:
    config = types.GenerateContentConfig(tools=dar_gemini.tools(rt))
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        response = await client.aio.models.generate_content(
            model="test-model", contents=contents, config=config
        )
        if not response.function_calls:
            return response.text
        answers = await dar_gemini.arun_function_calls(rt, response)  # id from dar.session()
        contents += [response.candidates[0].content, answers]  # type: ignore[index]


def function_responses(server: ModelServer) -> list[dict[str, Any]]:
    """Every function response the model was sent, as it went over the wire."""
    return [
        part["functionResponse"]
        for body in server.bodies(":generateContent")
        for content in body["contents"]
        for part in content.get("parts", [])
        if "functionResponse" in part
    ]


def check_conversation(server: ModelServer, db: str, shop: Any) -> None:
    check_handler_ran_once(shop)
    with Runtime(db) as rt:
        check_log(rt.events(correlation_id=CONVERSATION), calls=CALLS)
    sent = function_responses(server)
    check_refusal_seen([r["response"].get("error", "") for r in sent])
    first_turn = sent[: CALLS - 1]
    assert [(r["id"], r["name"], sorted(r["response"])) for r in first_turn] == [
        ("call_0_0", "place_order", ["result"]),
        ("call_0_1", "place_order", ["result"]),
        ("call_0_2", "place_order", ["error"]),
        ("call_0_3", "place_order", ["error"]),
        ("call_0_4", "launch_rocket", ["error"]),
    ]
    roles = {c["role"] for b in server.bodies(":generateContent") for c in b["contents"]}
    assert roles == {"user", "model"}


def test_generate_content_sync(tmp_path: Path) -> None:
    shop, db = make_shop(), f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(script(text_arguments=False)) as server:
        client = client_for(server)
        for _ in range(2):
            with Runtime(db, tools=shop.tools, rules=shop.rules) as rt:
                assert loop(client, rt) == ANSWER
    check_conversation(server, db, shop)
    declared = server.bodies(":generateContent")[0]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["place_order"]


def test_generate_content_async(tmp_path: Path) -> None:
    shop, db = make_shop(asynchronous=True), f"sqlite:///{tmp_path / 'agent.db'}"

    async def main(server: ModelServer) -> None:
        client = client_for(server)
        for _ in range(2):
            async with AsyncRuntime(db, tools=shop.tools, rules=shop.rules) as rt:
                with dar.session(CONVERSATION):
                    assert await aloop(client, rt) == ANSWER

    with ModelServer(script(text_arguments=False)) as server:
        asyncio.run(main(server))
    check_conversation(server, db, shop)


def reserve(sku: str) -> dict[str, Any]:
    """Reserve one item of a product."""
    return {"sku": sku, "reserved": 1, "shelves": ["A1", "B2"], "price": 2.5}


#: The same function as a dar tool: a second identical call answers from the record.
RESERVE = dar.tool(effect=Effect.MUTATE_EXTERNAL)(reserve)
#: The model calls it twice with the same arguments, then answers.
RESERVE_TWICE: list[Turn] = [[ToolCall("reserve", '{"sku": "tea"}')] * 2, "Reserved."]


def sent_responses(server: ModelServer) -> list[tuple[str, Any]]:
    return [(r["name"], r["response"]) for r in function_responses(server)]


def test_a_function_response_is_what_the_sdks_own_function_calling_sends(tmp_path: Path) -> None:
    with ModelServer(RESERVE_TWICE) as server:
        config = types.GenerateContentConfig(tools=[reserve])  # the SDK calls it itself
        client = client_for(server)
        chat = client.chats.create(model="test-model", config=config)
        assert chat.send_message(REQUEST).text == "Reserved."
    by_the_sdk = sent_responses(server)
    output = reserve("tea")
    assert by_the_sdk == [("reserve", {"result": output})] * 2

    db = f"sqlite:///{tmp_path / 'agent.db'}"
    with ModelServer(RESERVE_TWICE) as server, Runtime(db, tools=[RESERVE]) as rt:
        assert loop(client_for(server), rt) == "Reserved."
        statuses = [e.status for e in rt.events(tool="reserve") if e.status != "started"]
    assert statuses == ["executed", "cached"]  # the cached call reads what the first did
    assert sent_responses(server) == by_the_sdk

    async def asynchronous(server: ModelServer) -> None:
        async with AsyncRuntime(f"sqlite:///{tmp_path / 'a.db'}", tools=[RESERVE]) as rt:
            with dar.session(CONVERSATION):
                assert await aloop(client_for(server), rt) == "Reserved."

    with ModelServer(RESERVE_TWICE) as server:
        asyncio.run(asynchronous(server))
    assert sent_responses(server) == by_the_sdk


def test_wrong_objects(tmp_path: Path) -> None:
    with Runtime(f"sqlite:///{tmp_path / 'a.db'}") as rt:
        assert dar_gemini.tools(rt) == [types.Tool(function_declarations=[])]
        with pytest.raises(TypeError, match="GenerateContentResponse"):
            dar_gemini.run_function_calls(rt, {"candidates": []})


def test_missing_sdk_names_the_extra() -> None:
    said = missing_sdk_error("google.genai", "gemini")
    assert said == (
        "this integration needs google-genai: pip install google-genai (or install "
        "durable-agent-runtime with its [gemini] extra: pip install '.[gemini]' "
        "in a checkout)"
    )


def test_example_runs(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    with ModelServer(script(text_arguments=False)) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": "test"}
        done = run_example("gemini_loop.py", env, db)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    assert done.stdout.count("supplier: ordering") == 2
    with Runtime(f"sqlite:///{db}") as rt:
        executed = rt.events(status="executed")
    assert sorted(e.input["item"] for e in executed) == ["coffee", "tea"]


# --- durable(client): the model calls of a durable run, journaled ------------------------------

#: How the loop asks the model: ``generate_content`` or ``generate_content_stream``.
MODES = ["generate", "stream"]
#: What the resumed process passes that the crashed one did not: how the request travels.
TRANSPORT = {"timeout": 30_000, "headers": {"x-attempt": "2"}}


def durable_client(server: ModelServer) -> Any:
    return dar_gemini.durable(client_for(server))


def whole_response(chunks: list[Any]) -> types.GenerateContentResponse:
    """A streamed turn, its chunks' parts put together into one response."""
    parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]
    content = types.Content(role="model", parts=parts)
    return types.GenerateContentResponse(candidates=[types.Candidate(content=content)])


def asked(w: World) -> dict[str, Any]:
    transport = types.HttpOptions(**w.transport) if w.transport else None
    config = types.GenerateContentConfig(tools=dar_gemini.tools(w.rt), http_options=transport)
    return {"model": w.model, "config": config}


@dar.agent
def durable_shop(mode: str) -> str | None:
    """The shop conversation as a durable agent: a user's own loop, on the durable client."""
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        if mode == "stream":
            got = list(w.client.models.generate_content_stream(contents=contents, **asked(w)))
            w.turned(got)
            response = whole_response(got)
        else:
            response = w.client.models.generate_content(contents=contents, **asked(w))
            w.turned(response)
        if not response.function_calls:
            return response.text
        answers = dar_gemini.run_function_calls(rt, response, correlation_id=CONVERSATION)
        contents += [response.candidates[0].content, answers]  # type: ignore[index]


@dar.agent
async def adurable_shop(mode: str) -> str | None:
    w = WORLD.get()
    rt = cast("AsyncRuntime", w.rt)
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        models = w.client.aio.models
        if mode == "stream":
            chunks = await models.generate_content_stream(contents=contents, **asked(w))
            got = [chunk async for chunk in chunks]
            w.turned(got)
            response = whole_response(got)
        else:
            response = await models.generate_content(contents=contents, **asked(w))
            w.turned(response)
        if not response.function_calls:
            return response.text
        answers = await dar_gemini.arun_function_calls(rt, response, correlation_id=CONVERSATION)
        contents += [response.candidates[0].content, answers]  # type: ignore[index]


def check_sdk_types(turns: list[Any]) -> None:
    """Every turn (every chunk of a stream) is the SDK's own type, replayed or live."""
    for turn in turns:
        for each in turn if isinstance(turn, list) else [turn]:
            assert isinstance(each, types.GenerateContentResponse)
            assert isinstance(each.usage_metadata, types.GenerateContentResponseUsageMetadata)


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
    check_sdk_types(crashed.turns)


@pytest.mark.parametrize("mode", MODES)
def test_a_crashed_async_durable_run_resumes_without_asking_the_model_again(
    tmp_path: Path, mode: str
) -> None:
    async def whole_run(server: ModelServer) -> tuple[dar.RunResult, World]:
        shop = make_shop(asynchronous=True)
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'whole.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(durable_client(server), rt) as w:
                return await rt.start(adurable_shop, CONVERSATION, mode), w

    async def crashed_run(server: ModelServer) -> tuple[dar.RunResult, dar.RunRecord, World]:
        async with AsyncRuntime(
            f"sqlite:///{tmp_path / 'x.db'}", tools=shop.tools, rules=shop.rules
        ) as rt:
            with world(
                durable_client(server), rt, crash_after=CRASH_AFTER, after_crash=TRANSPORT
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
    check_sdk_types(crashed.turns)


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
            with world(durable_client(server), rt, crash_after=1) as w:
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


def answered(response: types.GenerateContentResponse) -> Any:
    """A response's JSON less the HTTP headers (their date moves on between two calls)."""
    return {k: v for k, v in response.to_json_dict().items() if k != "sdk_http_response"}


def test_outside_a_run_the_durable_client_is_the_client() -> None:
    with ModelServer(["Hello there."]) as server:
        plain = client_for(server)
        client = dar_gemini.durable(plain)
        assert isinstance(client, genai.Client)
        assert dar_gemini.durable(client) is client
        assert (client.vertexai, client.files) == (plain.vertexai, plain.files)
        said: dict[str, Any] = {"model": "m", "contents": REQUEST}
        generated = [each.models.generate_content(**said) for each in (plain, client)]
        assert answered(generated[0]) == answered(generated[1])
        streams = [each.models.generate_content_stream(**said) for each in (plain, client)]
        assert type(streams[0]) is type(streams[1])
        chunks = [[answered(c) for c in s] for s in streams]
        assert chunks[0] == chunks[1]

        async def asynchronous() -> None:
            generated = [await each.aio.models.generate_content(**said) for each in (plain, client)]
            assert answered(generated[0]) == answered(generated[1])
            first = await plain.aio.models.generate_content_stream(**said)
            second = await client.aio.models.generate_content_stream(**said)
            assert type(first) is type(second)
            assert [answered(c) async for c in first] == [answered(c) async for c in second]

        asyncio.run(asynchronous())
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 8
    assert bodies[0::2] == bodies[1::2]


@dar.agent
def leaves_each_stream_at_its_end() -> str | None:
    """Reads each stream only up to the chunk with a finish reason, as loops often do."""
    w = WORLD.get()
    rt = cast("Runtime", w.rt)
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=REQUEST)])]
    while True:
        got = []
        for chunk in w.client.models.generate_content_stream(contents=contents, **asked(w)):
            got.append(chunk)
            if chunk.candidates and chunk.candidates[0].finish_reason:
                break
        response = whole_response(got)
        w.turned(response)
        if not response.function_calls:
            return response.text
        answers = dar_gemini.run_function_calls(rt, response, correlation_id=CONVERSATION)
        contents += [response.candidates[0].content, answers]  # type: ignore[index]


def test_a_stream_left_at_the_chunk_that_completes_it_is_recorded(tmp_path: Path) -> None:
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
