# docs/postmortem.md's replay example: the quick start records session-xyz in quickstart.db
# (importing it runs it), and replay serves that session from the log.
from quickstart import courier_must_cover_zone, dispatch_order

from dar import ReplayDivergence, Runtime, Status

with Runtime("sqlite:///quickstart.db", tools=[dispatch_order], rules=[courier_must_cover_zone],
             replay="session-xyz") as replay:
    ship = {"order_id": "ORD-123", "courier": "shalom", "zone": "puno"}
    again = replay.call("dispatch_order", ship)
    print(again.status, again.output)   # executed, as recorded: no handler ran, nothing written
assert again.status == Status.EXECUTED  # as recorded

# A changed agent that sends another input first diverges at once.
with Runtime("sqlite:///quickstart.db", tools=[dispatch_order], rules=[courier_must_cover_zone],
             replay="session-xyz") as changed:
    try:
        changed.call("dispatch_order", {**ship, "zone": "cusco"})
    except ReplayDivergence as exc:
        print(exc)
    else:
        raise AssertionError("no divergence")
