"""A LangChain agent (``create_agent``) whose tool calls all go through dar.

Runs offline with a scripted chat model; set DAR_MODEL (e.g. "openai:gpt-5") to use a real
one. The agent owns its tools; the middleware routes each call through dar with the effect
the map gives it. The script ships the same order twice and tries a tool the map does not
classify: the order ships once, and the unclassified tool is refused until a rule covers it.

    PYTHONPATH=python python examples/integrations/langchain_loop.py
"""

# ruff: noqa: E402 - the integration's import sits beside its one use, as the README shows it

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from dar import Runtime


@tool
def ship_order(order_id: str, courier: str) -> str:
    """Hand an order to a courier; returns the tracking number."""
    print(f"  (shipping {order_id} with {courier})")
    return f"T-{order_id}"


@tool
def cancel_account(customer: str) -> str:
    """Close a customer's account for good."""
    return f"closed {customer}"


class Scripted(BaseChatModel):
    """Stands in for a model: ships ORD-1 twice and tries cancel_account, then reports."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            told = [f"{m.status}: {m.content}" for m in messages if isinstance(m, ToolMessage)]
            reply = AIMessage(content="Results:\n  " + "\n  ".join(told))
        else:
            calls = [
                ("ship_order", {"order_id": "ORD-1", "courier": "fast"}),
                ("ship_order", {"courier": "fast", "order_id": "ORD-1"}),
                ("cancel_account", {"customer": "C-9"}),
            ]
            reply = AIMessage(
                content="",
                tool_calls=[
                    {"name": n, "args": a, "id": f"c{i}"} for i, (n, a) in enumerate(calls)
                ],
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


db = os.path.join(tempfile.mkdtemp(), "agent.db")
rt = Runtime(f"sqlite:///{db}")
model = init_chat_model(os.environ["DAR_MODEL"]) if os.environ.get("DAR_MODEL") else Scripted()

from dar.integrations.langchain import DarMiddleware

middleware = [DarMiddleware(rt, effects={"ship_*": "mutate-external"})]

agent = create_agent(model, [ship_order, cancel_account], middleware=middleware)
out = agent.invoke(
    {"messages": [("user", "Ship ORD-1 with fast; close C-9.")]},
    {"configurable": {"thread_id": "conv-1"}},
)
print(out["messages"][-1].content)
for event in rt.events(correlation_id="conv-1"):
    print(f"  log: {event.tool_name} {event.status}")
