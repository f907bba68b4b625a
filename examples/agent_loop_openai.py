# docs/agents.md's loop with the OpenAI SDK and nothing in between (OPENAI_BASE_URL and
# OPENAI_API_KEY from the environment; the tests point it at a local model server). The tool
# and the rule are the quick start's (importing it runs it).
from quickstart import courier_must_cover_zone, dispatch_order

from openai import OpenAI
from dar import Runtime

client = OpenAI()
messages = [{"role": "user", "content": "Ship order ORD-7 with Shalom to Puno, please."}]

with Runtime("sqlite:///agent.db", tools=[dispatch_order], rules=[courier_must_cover_zone]) as rt:
    while True:
        msg = client.chat.completions.create(
            model="gpt-4.1", messages=messages, tools=rt.tool_schemas("openai-chat")
        ).choices[0].message
        messages.append(msg)
        if not msg.tool_calls:
            break
        for call in msg.tool_calls:
            reply = rt.call(call.function.name, call.function.arguments, correlation_id="conv-1")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": reply.for_model().text})
print(msg.content)
