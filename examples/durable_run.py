# docs/runs.md, run.
from pathlib import Path
import dar
from dar import Effect, Runtime, tool

@tool(effect=Effect.READ)
def order_status(order_id: str) -> str:
    return f"{order_id} arrived damaged"

@tool(effect=Effect.MUTATE_EXTERNAL, approval=True)       # a person approves each refund
def refund(order_id: str, amount: int) -> dict:
    return {"refunded": amount}

@dar.agent                                                  # resumable: found again by name
def support(order_id: str) -> str:
    status = rt.call("order_status", {"order_id": order_id}).output
    ticket = dar.step("ticket", lambda: f"T-{order_id}")     # any other value, journaled
    done = rt.call("refund", {"order_id": order_id, "amount": 20})
    return f"{status}; {ticket}; refund {done.status}"

Path("runs.db").unlink(missing_ok=True)  # a fresh log on every run
rt = Runtime("sqlite:///runs.db", tools=[order_status, refund])
first = rt.start(support, "conv-9", "ORD-9")
print(first.status)                      # suspended: the refund waits for a person
rt.approve(first.approval_id, by="alice")
(resumed,) = rt.resume()                 # from the journal: nothing before the refund runs again
print(resumed.status, resumed.output)
run = rt.runs()[0]
print(run.state, run.steps)
