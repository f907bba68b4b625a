"""A dar rule asks a person, through Pydantic AI's own deferred approvals.

Runs offline with a scripted model; set DAR_MODEL (e.g. "openai:gpt-5") to use a real one.
The model ships two orders by express; the rule wants a person for express. The run ends
with Pydantic AI's `DeferredToolRequests`; alice approves ORD-1 and denies ORD-2, and the
next run ships ORD-1 once while the model reads why ORD-2 was not.

    PYTHONPATH=python python examples/integrations/pydantic_ai_approval.py
"""

# ruff: noqa: E402 - the integration's import sits beside its one use, as the docs show it

from __future__ import annotations

import os
import tempfile
from typing import Any

from pydantic_ai import Agent, DeferredToolRequests, ToolDenied
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import dar
from dar import Effect, NeedsApproval, Runtime, rule, tool


@tool(effect=Effect.MUTATE_EXTERNAL)
def ship_order(order_id: str, courier: str) -> dict[str, str]:
    """Hand an order to a courier; returns the tracking number."""
    print(f"  (shipping {order_id} with {courier})")
    return {"tracking": f"T-{order_id}"}


@rule(applies_to="ship_order")
def express_needs_a_person(inp: dict[str, Any], ctx: dar.RuleContext) -> Any:
    return NeedsApproval("express costs extra") if inp["courier"] == "express" else True


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a model: ships two orders by express, then says what it was told."""
    if len(messages) == 1:
        return ModelResponse(
            parts=[
                ToolCallPart("ship_order", {"order_id": "ORD-1", "courier": "express"}, "c1"),
                ToolCallPart("ship_order", {"order_id": "ORD-2", "courier": "express"}, "c2"),
            ]
        )
    told = [p.content for p in messages[-1].parts if hasattr(p, "tool_call_id")]
    return ModelResponse(parts=[TextPart("Results: " + " | ".join(map(str, told)))])


def ask_alice(requests: DeferredToolRequests) -> dict[str, bool | ToolDenied]:
    """Stands in for a person reading each request: ORD-1 yes, ORD-2 no."""
    decisions: dict[str, bool | ToolDenied] = {}
    for call in requests.approvals:
        print(f"  alice reads: {call.tool_name} {call.args}")
        approve = call.args_as_dict()["order_id"] == "ORD-1"
        decisions[call.tool_call_id] = approve or ToolDenied("ORD-2 can wait for the van")
    return decisions


db = os.path.join(tempfile.mkdtemp(), "agent.db")
rt = Runtime(f"sqlite:///{db}", tools=[ship_order], rules=[express_needs_a_person])
model = os.environ.get("DAR_MODEL") or FunctionModel(scripted)

from dar.integrations.pydantic_ai import DarToolset, decide

agent = Agent(model, output_type=[str, DeferredToolRequests], toolsets=[DarToolset(rt)])

result = agent.run_sync("Ship ORD-1 and ORD-2 by express.")
while isinstance(result.output, DeferredToolRequests):
    decisions = decide(rt, result.output, ask_alice(result.output), by="alice")
    result = agent.run_sync(message_history=result.all_messages(), deferred_tool_results=decisions)
print(result.output)
for event in rt.events():
    print(f"  log: {event.tool_name} {event.status} {event.rejection_reason or ''}")
