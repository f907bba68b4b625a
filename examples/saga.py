# docs/sagas.md, run.
from pathlib import Path
from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_EXTERNAL)
def cancel_booking(order_id: str, zone: str) -> str:
    return "cancelled"                                        # your real call

@tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_booking)
def book_courier(order_id: str, zone: str) -> dict:
    return {"booking": f"B-{order_id}"}

@tool(effect=Effect.MUTATE_EXTERNAL)
def refund(charge_id: str) -> str:
    return "refunded"

@tool(effect=Effect.MUTATE_EXTERNAL, compensate=refund,
      compensate_input=lambda inp, out: {"charge_id": out["charge_id"]})
def charge_advance(order_id: str, amount_cents: int) -> dict:
    raise RuntimeError("card declined")

Path("saga.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///saga.db", tools=[book_courier, charge_advance]) as rt:
    with rt.saga("checkout-ORD-1", correlation_id="conv-1") as saga:
        saga.call("book_courier", {"order_id": "ORD-1", "zone": "puno"})
        saga.call("charge_advance", {"order_id": "ORD-1", "amount_cents": 4000})
    print(saga.result)        # compensated: the booking was cancelled, once

assert saga.result == "compensated"
