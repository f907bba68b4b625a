"""dar.integrations.gemini with the real google-genai client, against the local model server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer
from dar.integrations import gemini as dar_gemini
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
        ("call_0_0", "place_order", ["output"]),
        ("call_0_1", "place_order", ["output"]),
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
