# docs/tracing.md's example: one refund, traced by the OpenTelemetry SDK, linked to the log.
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from dar import Effect, Runtime, rule, tool
from dar.integrations.otel import instrument

provider = TracerProvider()  # yours: exporting to Jaeger, Honeycomb, Logfire...
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
tracer = provider.get_tracer("shop-agent")

@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"refund:{i['order_id']}")
def refund(order_id: str, amount: int) -> dict:
    """Refund an order to the customer's card."""
    return {"order_id": order_id, "refunded": amount}  # your payment provider's call

@rule(applies_to="refund")
def at_most_100(inp: dict, ctx) -> bool:
    return inp["amount"] <= 100

Path("refunds.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///refunds.db", tools=[refund], rules=[at_most_100]) as rt:
    instrument(rt, tracer_provider=provider)
    with tracer.start_as_current_span("agent turn"):  # or the SDK's own span
        result = rt.call("refund", {"order_id": "ORD-7", "amount": 40}, correlation_id="chat-1")
    row = next(e for e in rt.events() if e.event_id == result.event_id)
    print(result.status, "chain hash of its row:", row.row_hash)
