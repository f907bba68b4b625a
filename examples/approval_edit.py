# docs/approvals.md, run.
from pathlib import Path
from dar import ConfigurationError, Deny, Effect, NeedsApproval, Runtime, rule, tool

@tool(effect=Effect.IRREVERSIBLE)
def refund(order_id: str, amount_cents: int) -> dict:
    return {"order_id": order_id, "refunded": amount_cents}       # your real call

@rule(applies_to="refund")
def big_refunds_need_a_person(inp: dict, ctx) -> NeedsApproval | bool:
    return NeedsApproval("over 100 PEN") if inp["amount_cents"] > 10_000 else True

@rule(applies_to="refund")
def at_most_500_pen(inp: dict, ctx) -> Deny | bool:
    return Deny("refunds stop at 500 PEN") if inp["amount_cents"] > 50_000 else True

Path("approval_edit.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///approval_edit.db", tools=[refund],
             rules=[big_refunds_need_a_person, at_most_500_pen]) as rt:
    asked = {"order_id": "ORD-8", "amount_cents": 12_000}
    first = rt.call("refund", asked, correlation_id="conv-8")     # awaiting_approval
    try:  # an edit is held to the tool's schema and rules, like a call
        rt.approve(first.approval_id, by="alice",
                   arguments={"order_id": "ORD-8", "amount_cents": 90_000})
    except ConfigurationError as refused:
        print(refused)                                # the request still waits
    rt.approve(first.approval_id, by="alice",        # or: dar approve ID --by alice
               arguments={"order_id": "ORD-8", "amount_cents": 8_000})  # --arguments JSON
    done = rt.call("refund", asked, correlation_id="conv-8")      # the agent's call, as made
    print(done.status, done.output)                  # the edit ran, the request never
    print(done.for_model().text)
    print(rt.call("refund", asked, correlation_id="conv-8").status)  # once: cached
