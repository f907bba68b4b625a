"""An OpenAI Agents SDK agent whose every tool call goes through dar.

    OPENAI_API_KEY=... python examples/integrations/openai_agents_loop.py

The SDK runs the loop; dar supplies the tools. The SDK's default client reads
OPENAI_API_KEY and OPENAI_BASE_URL from the environment; OPENAI_MODEL picks the model.
The run's group_id is the conversation: every call is logged under it.
"""

from __future__ import annotations

import asyncio
import os

import agents
from shop import DATABASE, REQUEST, RULES, TOOLS

from dar import AsyncRuntime
from dar.integrations import openai_agents

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")


async def main() -> None:
    agents.set_tracing_disabled(True)  # this example sends nothing to OpenAI's trace viewer
    async with AsyncRuntime(DATABASE, tools=TOOLS, rules=RULES) as rt:
        agent = agents.Agent(
            name="shop",
            instructions="Order what the user asks for.",
            model=MODEL,
            tools=openai_agents.function_tools(rt),
        )
        config = agents.RunConfig(group_id="conv-1")
        result = await agents.Runner.run(agent, REQUEST, run_config=config)
    print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
