# The async version of the quick start (docs/semantics.md); the tool and rule are the quick
# start's (importing it runs it, which recreates quickstart.db).
from quickstart import courier_must_cover_zone, dispatch_order

import asyncio
from dar import AsyncRuntime

async def main():
    async with AsyncRuntime("sqlite:///quickstart.db", tools=[dispatch_order],
                            rules=[courier_must_cover_zone]) as rt:
        order = {"order_id": "ORD-125", "courier": "olva", "zone": "lima"}
        first, again = await asyncio.gather(rt.call("dispatch_order", order),
                                            rt.call("dispatch_order", order))
        print(sorted([first.status.value, again.status.value]))  # ['cached', 'executed']

asyncio.run(main())
