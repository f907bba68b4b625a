# The README's quick start, as pasted.
from dar import tool, rule, Effect, Allow, Deny, Runtime, Status

COVERAGE = {"shalom": {"puno", "juliaca", "cusco"}, "olva": {"lima", "arequipa"}}

@tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order_id']}:{i['courier']}")
def dispatch_order(order_id: str, courier: str, zone: str) -> dict:
    """Hand an order to a courier for home delivery.

    Args:
        order_id: the shop's order number, like ORD-123
        courier: shalom or olva
        zone: the town to deliver to
    """
    return {"order_id": order_id, "tracking": f"{courier.upper()}-{order_id}"}  # your real call

@rule(applies_to="dispatch_order")
def courier_must_cover_zone(inp: dict, ctx) -> Allow | Deny:
    if inp["zone"] not in COVERAGE.get(inp["courier"], ()):
        return Deny(f"{inp['courier']} does not deliver to {inp['zone']}")
    return Allow()

with Runtime("sqlite:///agent.db", tools=[dispatch_order], rules=[courier_must_cover_zone]) as rt:
    res = rt.call("dispatch_order", '{"order_id": "ORD-123", "courier": "shalom", "zone": "puno"}',
                  correlation_id="session-xyz")
    print(res.status)      # executed; the same call again: cached, with the same output
    print(res.output, res.key, res.event_id)
    print(rt.call("dispatch_order", {"order_id": "ORD-124", "courier": "shalom", "zone": "yunguyo"},
                  correlation_id="session-xyz").for_model().text)   # refused, in words for the model
