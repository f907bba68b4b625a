# The README's quick start, as pasted: run it twice, it prints the same thing.
from pathlib import Path
from dar import Allow, Deny, Effect, Runtime, rule, tool

COVERAGE = {"shalom": {"puno", "juliaca", "cusco"}, "olva": {"lima", "arequipa"}}

@tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order_id']}")
def dispatch_order(order_id: str, courier: str, zone: str) -> dict:
    """Hand an order to a courier for home delivery."""
    return {"order_id": order_id, "tracking": f"{courier.upper()}-{order_id}"}  # your real call

@rule(applies_to="dispatch_order")
def courier_must_cover_zone(inp: dict, ctx) -> Allow | Deny:
    if inp["zone"] not in COVERAGE.get(inp["courier"], ()):
        return Deny(f"{inp['courier']} does not deliver to {inp['zone']}")
    return Allow()

Path("quickstart.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///quickstart.db", tools=[dispatch_order],
             rules=[courier_must_cover_zone]) as rt:
    ship = '{"order_id": "ORD-123", "courier": "shalom", "zone": "puno"}'  # as the model sends it
    first = rt.call("dispatch_order", ship, correlation_id="session-xyz")
    again = rt.call("dispatch_order", ship, correlation_id="session-xyz")  # a retried turn
    print(first.status, again.status, again.output)
    far = {"order_id": "ORD-124", "courier": "shalom", "zone": "yunguyo"}
    print(rt.call("dispatch_order", far, correlation_id="session-xyz").for_model().text)
