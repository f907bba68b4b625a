# docs/dry-runs.md, run.
from pathlib import Path
from dar import Effect, Runtime, tool

def quote(order_id: str, zone: str) -> dict:                 # no effects: a preview
    return {"courier": "shalom", "fee_cents": 1200 if zone == "puno" else 2500}

@tool(effect=Effect.MUTATE_EXTERNAL, simulate=quote)
def book_courier(order_id: str, zone: str) -> dict:
    return {"booked": order_id}                                # your real call

Path("plans.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///plans.db", tools=[book_courier]) as rt:
    plan = rt.plan("book_courier", {"order_id": "ORD-8", "zone": "puno"}, correlation_id="conv-8")
    print(plan.verdict, plan.preview)      # execute {'courier': 'shalom', 'fee_cents': 1200}
    print(rt.commit(plan).status)        # executed: exactly that call, once
    print(rt.commit(plan).status)        # stale: the key moved since the plan

with Runtime("sqlite:///plans.db", tools=[book_courier], dry_run=True) as rehearsal:
    print(rehearsal.call("book_courier", {"order_id": "ORD-9", "zone": "cusco"}).status)  # planned
    reviewed = rehearsal.plans()
    print([p.preview for p in reviewed])   # review them; a dry run itself never commits

with Runtime("sqlite:///plans.db", tools=[book_courier]) as live:
    print([str(r.status) for r in live.commit_all(reviewed)])   # ['executed']: once each
