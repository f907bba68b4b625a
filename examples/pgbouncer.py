# docs/deploy.md: dar through PgBouncer in transaction pooling mode.
import os
from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_EXTERNAL)
def ship(order_id: str) -> dict:
    return {"shipped": order_id}

url = os.environ["DAR_DATABASE_URL"]    # PgBouncer, e.g. postgresql://dar_app@pgbouncer:6432/app
rt = Runtime(f"{url}?schema=agents&pool_mode=transaction")  # no prepared statements, no LISTEN
first = rt.execute(ship, {"order_id": "ORD-1"})
again = rt.execute(ship, {"order_id": "ORD-1"})
print(first.status, again.status)      # executed cached
rt.close()
