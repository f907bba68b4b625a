# docs/guards.md, run.
from pathlib import Path
from dar import Budget, Effect, Runtime, Similar, tool

@tool(effect=Effect.MUTATE_EXTERNAL,
      guards=[Budget(500, of="amount", per=("customer_id",), within="24h"),  # a sum
              Budget(3, per=("customer_id",), within="1h")])                 # a count
def refund(customer_id: str, order_id: str, amount: float) -> dict:
    return {"refunded": amount, "order_id": order_id}                   # your real call

@tool(effect=Effect.MUTATE_EXTERNAL,
      guards=[Similar("message", same=("to",), within="10m", then="hold")])
def send_whatsapp(to: str, message: str) -> dict:
    return {"sent": message}                                            # your real call

Path("guards.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///guards.db", tools=[refund, send_whatsapp]) as rt:
    for order, amount in [("ORD-1", 200), ("ORD-2", 250), ("ORD-3", 100)]:
        done = rt.call("refund", {"customer_id": "C-1", "order_id": order, "amount": amount})
        print(order, done.status, done.reason or "")
    # ORD-3 is rejected: "450 of 500 used in the last 24h for customer_id C-1; ..."

    chat = {"to": "+34600000001"}
    sent = rt.call("send_whatsapp", {**chat, "message": "Your order ORD-1 ships tomorrow"},
                   correlation_id="conv-1")
    again = rt.call("send_whatsapp", {**chat, "message": "Good news: ORD-1 will be shipped tomorrow!"},
                    correlation_id="conv-1")
    other = rt.call("send_whatsapp", {**chat, "message": "Your refund for ORD-1 was denied"},
                    correlation_id="conv-1")
    print(sent.status, again.status, other.status)  # executed awaiting_approval executed
    print(again.for_model().text[:60])
    rt.approve(again.approval_id, by="alice")       # a person says: send it anyway
    print(rt.call("send_whatsapp", {**chat, "message": "Good news: ORD-1 will be shipped tomorrow!"},
                  correlation_id="conv-1").status)  # executed
