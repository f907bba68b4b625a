"""An OpenAI Agents SDK agent whose caviar orders wait for a person, asked the SDK's way.

    OPENAI_API_KEY=... python examples/integrations/openai_agents_approval.py

A dar rule sends every caviar order to a person, so the SDK stops the run there
(`result.interruptions`) and a person answers at the terminal. `openai_agents.approve` and
`openai_agents.reject` stand for the SDK's `state.approve` and `state.reject`: they also
record the decision in dar, with who decided, so the resumed run places the approved order
once, on exactly those arguments (or tells the model who refused it, and why).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import agents
from shop import DATABASE, RULES, TOOLS

from dar import Allow, AsyncRuntime, NeedsApproval, rule
from dar.integrations import openai_agents

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")


@rule(applies_to="place_order")
def caviar_needs_a_manager(inp: dict[str, Any], ctx: Any) -> Allow | NeedsApproval:
    return NeedsApproval("caviar needs a manager") if inp["item"] == "caviar" else Allow()


async def main() -> None:
    agents.set_tracing_disabled(True)  # this example sends nothing to OpenAI's trace viewer
    rules = [*RULES, caviar_needs_a_manager]
    async with AsyncRuntime(DATABASE, tools=TOOLS, rules=rules) as rt:
        agent = agents.Agent(
            name="shop",
            instructions="Order what the user asks for.",
            model=MODEL,
            tools=openai_agents.function_tools(rt, correlation_id="conv-1"),
        )
        result = await agents.Runner.run(agent, "Order 2 tea and a caviar.")
        while result.interruptions:
            state = result.to_state()
            for item in result.interruptions:
                if input(f"{item.name} {item.arguments}: approve? [y/N] ") == "y":
                    await openai_agents.approve(rt, state, item, by="manager")
                else:
                    await openai_agents.reject(rt, state, item, by="manager", reason="not today")
            result = await agents.Runner.run(agent, state)
    print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
