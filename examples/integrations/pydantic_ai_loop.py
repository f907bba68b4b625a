"""A Pydantic AI agent whose tool calls go through dar.

Runs offline with a scripted model; set DAR_MODEL (e.g. "openai:gpt-5") to use a real one.
The script asks twice to ship the same order and once with a courier the rule refuses: the
order ships once, and the model reads the refusal.

    PYTHONPATH=python python examples/integrations/pydantic_ai_loop.py
"""

# ruff: noqa: E402 - the integration's import sits beside its one use, as the README shows it

from __future__ import annotations

import os
import tempfile
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import dar
from dar import Deny, Effect, Runtime, rule, tool


@tool(effect=Effect.MUTATE_EXTERNAL)
def ship_order(order_id: str, courier: str) -> dict[str, str]:
    """Hand an order to a courier; returns the tracking number."""
    print(f"  (shipping {order_id} with {courier})")
    return {"tracking": f"T-{order_id}"}


@rule(applies_to="ship_order")
def courier_serves_zone(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return Deny("slowpoke does not serve Puno") if inp["courier"] == "slowpoke" else True


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a model: ships ORD-1 twice and ORD-2 with the wrong courier."""
    if len(messages) == 1:
        return ModelResponse(
            parts=[
                ToolCallPart("ship_order", {"order_id": "ORD-1", "courier": "fast"}, "c1"),
                ToolCallPart("ship_order", {"courier": "fast", "order_id": "ORD-1"}, "c2"),
                ToolCallPart("ship_order", {"order_id": "ORD-2", "courier": "slowpoke"}, "c3"),
            ]
        )
    told = [p.content for p in messages[-1].parts if hasattr(p, "tool_call_id")]
    return ModelResponse(parts=[TextPart("Results: " + " | ".join(map(str, told)))])


db = os.path.join(tempfile.mkdtemp(), "agent.db")
rt = Runtime(f"sqlite:///{db}", tools=[ship_order], rules=[courier_serves_zone])
model = os.environ.get("DAR_MODEL") or FunctionModel(scripted)

from dar.integrations.pydantic_ai import DarToolset

agent = Agent(model, toolsets=[DarToolset(rt)])

result = agent.run_sync("Ship ORD-1 with fast, and ORD-2 with slowpoke.")
print(result.output)
for event in rt.events():
    print(f"  log: {event.tool_name} {event.status} {event.rejection_reason or ''}")
