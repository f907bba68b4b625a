from pathlib import Path
from dar import Deny, Effect, Runtime, rule, tool
from dar.speculate import Branch, Candidate

PRICES = {"cheapo": 900, "shalom": 1200, "andes": 1500}

@tool(effect=Effect.READ)
def quote_couriers(zone: str) -> list:                        # reads run for real, once
    return [{"courier": c, "cents": p} for c, p in PRICES.items()]

def preview(order_id: str, courier: str) -> dict:            # what a booking would cost
    fee = 800 if courier == "shalom" else 0                    # a fee only the preview shows
    return {"courier": courier, "cents": PRICES[courier] + fee}

@tool(effect=Effect.MUTATE_EXTERNAL, simulate=preview)
def book_courier(order_id: str, courier: str) -> dict:
    return {"booked": order_id, "courier": courier}          # never runs during a search

@rule(applies_to="book_courier")
def covers_puno(inp: dict, ctx) -> object:
    return Deny("cheapo does not cover puno") if inp["courier"] == "cheapo" else True

def propose(branch: Branch) -> list[Candidate]:              # e.g. n samples of the model
    if not branch.path:
        return [Candidate("quote_couriers", {"zone": "puno"})]
    last = branch.path[-1]
    if last.candidate.tool == "quote_couriers":              # cheapest first: the greedy pick
        quotes = sorted(last.result.output, key=lambda q: q["cents"])
        return [Candidate("book_courier", {"order_id": "ORD-7", "courier": q["courier"]})
                for q in quotes]
    return []

def score(branch: Branch) -> float:                          # 0..1: cheaper is better
    last = branch.path[-1].result if branch.path else None
    if last is None or last.status != "planned":
        return 0.0                                             # refused, or nothing booked
    return 1 - last.output["cents"] / 3000

Path("search.db").unlink(missing_ok=True)  # a fresh log on every run
with Runtime("sqlite:///search.db", tools=[quote_couriers, book_courier], rules=[covers_puno]) as rt:
    search = rt.speculate("conv-7", propose=propose, score=score, budget=8, depth=2, seed=0)
    for node in search.tree[1:]:
        print(node.depth, node.candidate.tool, node.status, node.visits, round(node.mean, 2))
    print([p.preview for p in search.best], round(search.score, 2))
    print([str(r.status) for r in rt.commit_all(search.best)])   # once each
    print([str(r.status) for r in rt.commit_all(search.best)])   # stale: already done
