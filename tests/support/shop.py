"""The conversation every integration test replays: one tool, one rule, and a model that
repeats itself, breaks rules, mistypes, invents a tool and writes broken JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dar import Allow, Deny, Effect, Event, Status, rule, tool
from dar.demo.scripted_model import ToolCall, Turn
from dar.rules import Rule
from dar.tools import Tool

ROOT = Path(__file__).resolve().parents[2]
CONVERSATION = "conv-1"
REFUSAL = "orders above 10 units need a human"

TEA = ToolCall("place_order", '{"item": "tea", "quantity": 2}')
TEA_AGAIN = ToolCall("place_order", '{"quantity": 2, "item": "tea"}')  # same call, reordered
GOLD = ToolCall("place_order", '{"item": "gold", "quantity": 50}')  # refused by the rule
MISTYPED = ToolCall("place_order", '{"item": "tea", "quantity": "three"}')
UNKNOWN = ToolCall("launch_rocket", '{"target": "moon"}')
BROKEN = ToolCall("place_order", '{"item": "tea", "quantity": ')
COFFEE = ToolCall("place_order", '{"item": "coffee", "quantity": 1}')
ANSWER = "Ordered 2 tea and 1 coffee; gold needs a human."


def script(*, text_arguments: bool) -> list[Turn]:
    """The model's turns. Broken JSON only where the API carries arguments as text."""
    first = [TEA, TEA_AGAIN, GOLD, MISTYPED, UNKNOWN]
    if text_arguments:
        first.append(BROKEN)
    return [first, [COFFEE], ANSWER]


def calls_per_run(*, text_arguments: bool) -> int:
    return sum(len(t) for t in script(text_arguments=text_arguments) if not isinstance(t, str))


@dataclass
class Shop:
    """The tools and rules of one test, and how often the handler really ran."""

    ran: Counter[tuple[str, int]]
    tools: list[Tool[Any]]
    rules: list[Rule]


def make_shop(*, asynchronous: bool = False) -> Shop:
    ran: Counter[tuple[str, int]] = Counter()

    def place(item: str, quantity: int) -> dict[str, Any]:
        ran[(item, quantity)] += 1
        return {"order": f"{quantity} x {item}", "status": "placed"}

    if asynchronous:

        async def place_order(item: str, quantity: int) -> dict[str, Any]:
            """Order goods from the supplier.

            Args:
                item: What to order.
                quantity: How many units.
            """
            await asyncio.sleep(0.05)  # long enough for a duplicate to arrive meanwhile
            return place(item, quantity)

    else:

        def place_order(item: str, quantity: int) -> dict[str, Any]:  # type: ignore[misc]
            """Order goods from the supplier.

            Args:
                item: What to order.
                quantity: How many units.
            """
            return place(item, quantity)

    @rule(applies_to="place_order")
    def at_most_ten(inp: dict[str, Any], ctx: Any) -> Allow | Deny:
        return Deny(REFUSAL) if inp["quantity"] > 10 else Allow()

    made = tool(effect=Effect.MUTATE_EXTERNAL)(place_order)
    return Shop(ran, [made], [at_most_ten])


def check_handler_ran_once(shop: Shop) -> None:
    """Two runs of the conversation: every distinct valid call ran exactly once."""
    assert shop.ran == Counter({("tea", 2): 1, ("coffee", 1): 1})


def check_log(
    events: list[Event], *, calls: int, runs: int = 2, unknown_logged: bool = True
) -> None:
    """Every call of every run is in the log, under the conversation's id. (A framework
    that answers a call to an unknown tool itself never passes it to the runtime.)"""
    if not unknown_logged:
        calls -= 1
    assert events, "nothing logged"
    assert {e.correlation_id for e in events} == {CONVERSATION}
    by_call: dict[str | None, list[Event]] = {}
    for e in events:
        by_call.setdefault(e.call_id, []).append(e)
    assert None not in by_call
    assert len(by_call) == calls * runs
    executed = [e for e in events if e.status == Status.EXECUTED.value]
    assert len(executed) == 2
    tools = {e.tool_name for e in events}
    assert tools == ({"place_order", "launch_rocket"} if unknown_logged else {"place_order"})
    refused = [e for e in events if e.status == Status.REJECTED.value]
    assert any(e.rule_name == "at_most_ten" for e in refused)
    assert len(refused) == (calls - 3) * runs  # all but tea, tea again and coffee


def check_refusal_seen(tool_results: list[str]) -> None:
    """The model was told, in the runtime's words, why the gold order was refused."""
    refused = [t for t in tool_results if REFUSAL in t]
    assert refused, tool_results
    assert refused[0].startswith("Refused by the rule at_most_ten")


def run_example(
    name: str, env: dict[str, str], db: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/integrations/<name>`` as a user would, against the model server
    (``stdin``: what the user types)."""
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "python"),
        "DAR_DATABASE_URL": f"sqlite:///{db}",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "integrations" / name)],
        env=full,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def missing_sdk_error(blocked: str, module: str) -> str:
    """What importing ``dar.integrations.<module>`` says when ``blocked`` is not installed."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from dar.errors import ConfigurationError\n"
        "try:\n"
        f"    import dar.integrations.{module}\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def tool_text(content: Any) -> str:
    """A tool result's text, whether sent as a string or as content blocks."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
