"""What a search buys and what it costs, on the test world (tests/support/couriers.py:
the cheapest courier is refused, the second charges a fee only its preview shows).

- the greedy path's score (the model's first choice at each step) against the searched
  path's;
- the smallest budget that finds the best path, over seeds;
- node expansions per second: the search driven by the runtime (reads run and logged,
  effects planned and logged, on SQLite in memory and in a file) against the same search
  driven with the same answers from memory (the pure core: what the log and the sandbox add).

    PYTHONPATH=python:. python benches/bench_speculate.py [SEEDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tests.support.couriers import World, greedy, propose, score

from dar import Effect, Status
from dar.core.search import Judge, Propose, Try, search
from dar.records import Result
from dar.rules import Deny

BUDGET = 64


def wide() -> World:
    """Thirty couriers: a tree of 61 nodes, so a budget of 64 is spent on expansions."""
    prices = {f"c{i:02d}": 900 + 37 * i for i in range(30)}
    return World(prices=prices, fees={"c01": 800}, uncovered={"c00"})


def searched(world: World, url: str, budget: int, seed: int) -> tuple[float, int, float]:
    """The searched path's score, the expansions, and the seconds the search took."""
    with world.runtime(url) as rt:
        started = time.perf_counter()
        found = rt.speculate("bench", propose=propose, score=score, budget=budget, seed=seed)
        took = time.perf_counter() - started
    return found.score, found.expansions, took


def budget_needed(seed: int, best: float) -> int:
    for budget in range(1, BUDGET + 1):
        if searched(World(), "sqlite://:memory:", budget, seed)[0] >= best:
            return budget
    return -1


def in_memory(world: World, budget: int) -> tuple[int, float]:
    """The same search with every answer from memory: reads and previews computed by the
    world's own functions, nothing logged."""
    tools = {t.name: t for t in world.tools()}
    rules = world.rules()
    gen = search("bench", budget=budget, depth=3, seed=0, deadline=None, clock=time.monotonic)
    started = time.perf_counter()
    answer: Any = None
    try:
        while True:
            asked = gen.send(answer)
            if isinstance(asked, Propose):
                answer = propose(asked.branch)
            elif isinstance(asked, Try):
                answer = _answer(tools, rules, asked.candidate.tool, asked.candidate.arguments)
            else:
                assert isinstance(asked, Judge)
                answer = score(asked.branch)
    except StopIteration as stop:
        return stop.value.expansions, time.perf_counter() - started


def _answer(tools: dict[str, Any], rules: list[Any], name: str, arguments: Any) -> Result:
    tool = tools[name]
    if tool.effect is Effect.READ:
        return Result(Status.EXECUTED, output=tool.handler(**arguments))
    if any(
        isinstance(r.check(arguments, None), Deny) for r in rules if r.applies(name, tool.effect)
    ):
        return Result(Status.REJECTED, reason="refused")
    preview = tool.simulate(**arguments) if tool.simulate else None
    return Result(Status.PLANNED, output=preview)


def main() -> None:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    console = Console()
    best = searched(World(), "sqlite://:memory:", BUDGET, 0)[0]
    needed = [budget_needed(seed, best) for seed in range(seeds)]
    table = Table(title="the test world: greedy against searched")
    for column in ("greedy path's score", f"searched (budget {BUDGET})", "budget to find it"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{greedy(World()):.3f}",
        f"{best:.3f}",
        f"min {min(needed)} / median {statistics.median(needed):g} / max {max(needed)} "
        f"over {seeds} seeds",
    )
    console.print(table)

    rates = Table(title=f"node expansions per second (30 couriers, budget {BUDGET}, median of 5)")
    for column in ("driven by", "nodes", "ms per search", "nodes / s", "÷ in memory"):
        rates.add_column(column, justify="right")
    runs: dict[str, list[tuple[int, float]]] = {"in memory (core only)": []}
    with tempfile.TemporaryDirectory() as folder:
        stores = {
            "runtime, SQLite memory": "sqlite://:memory:",
            "runtime, SQLite file": f"sqlite:///{Path(folder) / 'b.db'}",
        }
        for name in stores:
            runs[name] = []
        for _ in range(5):
            runs["in memory (core only)"].append(in_memory(wide(), BUDGET))
            for name, url in stores.items():
                _, nodes, took = searched(wide(), url, BUDGET, 0)
                runs[name].append((nodes, took))
    floor = statistics.median(t for _, t in runs["in memory (core only)"])
    for name, measured in runs.items():
        nodes, took = measured[0][0], statistics.median(t for _, t in measured)
        rates.add_row(name, str(nodes), f"{took * 1000:.1f}", f"{nodes / took:,.0f}",
                      f"{took / floor:.1f}×")  # fmt: skip
    console.print(rates)


if __name__ == "__main__":
    main()
