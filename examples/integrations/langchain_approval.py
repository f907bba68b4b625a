"""A LangChain agent whose large payments wait for a person.

A dar rule asks for approval; the agent stops with LangChain's own human-in-the-loop
interruption (the request ``HumanInTheLoopMiddleware`` makes, so its UIs show it), and the
reviewer's answer, LangChain's own plus who decides, becomes a dar decision: a grant for
exactly the call that was shown, used once. Runs offline with a scripted chat model.

    PYTHONPATH=python python examples/integrations/langchain_approval.py
"""

# ruff: noqa: E402 - the integration's import sits beside its one use, as the docs show it

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from dar import NeedsApproval, Runtime, rule


@tool
def pay(amount: float, to: str) -> str:
    """Pay someone."""
    print(f"  (paying {amount} to {to})")
    return f"paid {amount} to {to}"


class Scripted(BaseChatModel):
    """Stands in for a model: pays bob 250, then 900 when asked again; reports each result."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            reply = AIMessage(content=f"{messages[-1].status}: {messages[-1].content}")
        else:
            asked = sum(isinstance(m, HumanMessage) for m in messages)
            amount = 250 if asked == 1 else 900
            call = {"name": "pay", "args": {"amount": amount, "to": "bob"}, "id": f"c{asked}"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])


@rule(applies_to="pay")
def large_payments_need_a_person(inp: dict[str, Any], ctx: Any) -> Any:
    return NeedsApproval("payments over 100 need a person") if inp["amount"] > 100 else True


rt = Runtime(f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'agent.db')}")
rt.add_rule(large_payments_need_a_person)

from dar.integrations.langchain import DarMiddleware

middleware = [DarMiddleware(rt, effects={"pay": "mutate-external"})]
agent = create_agent(Scripted(), [pay], middleware=middleware, checkpointer=InMemorySaver())
thread = {"configurable": {"thread_id": "conv-1"}}

out = agent.invoke({"messages": [("user", "Pay bob 250.")]}, thread)
(asked,) = out["__interrupt__"]  # LangChain's own interruption: nothing was paid
print("asked:", asked.value["action_requests"][0]["description"])
approve = {"decisions": [{"type": "approve"}], "by": "alice"}
out = agent.invoke(Command(resume=approve), thread)  # the grant: this call, once
print(out["messages"][-1].content)

out = agent.invoke({"messages": [("user", "Pay bob 900.")]}, thread)  # other arguments: asked
reject = {"decisions": [{"type": "reject", "message": "over budget"}], "by": "alice"}
out = agent.invoke(Command(resume=reject), thread)
print(out["messages"][-1].content)

for decided in rt.approvals():
    print(f"  {decided.input}: {decided.status}, decided by {decided.decided_by}")
rt.close()
