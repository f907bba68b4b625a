"""dar.integrations.anthropic with the real anthropic client, against the local model server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import anthropic
import pytest
from anthropic.types import ToolParam

import dar
from dar import AsyncRuntime, Runtime
from dar.demo.scripted_model import ModelServer
from dar.integrations import anthropic as dar_anthropic
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
