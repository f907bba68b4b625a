# The README's replay example: the quick start records session-xyz, replay serves it.
from dar import Runtime, Status
from quickstart import courier_must_cover_zone, dispatch_order

with Runtime("sqlite:///agent.db", tools=[dispatch_order], rules=[courier_must_cover_zone],
             replay="session-xyz") as replay:
    again = replay.call("dispatch_order",
                        {"order_id": "ORD-123", "courier": "shalom", "zone": "puno"})
    print(again.status, again.output)   # as recorded; no handler ran, nothing was written
assert again.status == Status.EXECUTED  # as recorded
