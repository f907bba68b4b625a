# docs/approvals.md, run.
from pathlib import Path
from dar import Effect, NeedsApproval, Runtime, rule, tool

@tool(effect=Effect.IRREVERSIBLE)
def confirm_payment(order_id: str, amount_cents: int) -> dict:
    return {"order_id": order_id, "confirmed": amount_cents}      # your real call

@rule(applies_to="confirm_payment")
def big_payments_need_a_person(inp: dict, ctx) -> NeedsApproval | bool:
    return NeedsApproval("over 1000 PEN") if inp["amount_cents"] > 100_000 else True

Path("approval.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///approval.db", tools=[confirm_payment],
             rules=[big_payments_need_a_person]) as rt:
    pay = {"order_id": "ORD-7", "amount_cents": 125_000}
    asked = rt.call("confirm_payment", pay, correlation_id="conv-7")
    print(asked.status, asked.approval_id)          # awaiting_approval: nothing ran
    rt.approve(asked.approval_id, by="alice")         # or: dar approve ID --by alice
    print(rt.call("confirm_payment", {**pay, "amount_cents": 152_000}).status)  # a new request
    print(rt.call("confirm_payment", pay, correlation_id="conv-7").status)      # executed, once

with Runtime("sqlite:///approval.db") as check:  # the other amount still waits for a person
    assert {a.status for a in check.approvals(correlation_id="conv-7")} == {"used"}
    assert [a.status for a in check.approvals(status="pending")] == ["pending"]
