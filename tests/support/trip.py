"""A trip agent that uses every entry point of a runtime: a plan and its commit, a saga,
a plain call. The replay and dry-run tests run it in each mode."""

from __future__ import annotations

from typing import Any

from dar import Effect, Runtime, Tool, tool


def trip_tools(runs: list[tuple[str, str]]) -> list[Tool[Any]]:
    @tool(effect=Effect.MUTATE_EXTERNAL)
    def cancel_car(car: str) -> str:
        runs.append(("cancel_car", car))
        return "cancelled"

    @tool(effect=Effect.MUTATE_EXTERNAL, compensate=cancel_car)
    def book_car(car: str) -> str:
        runs.append(("book_car", car))
        return "booked"

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def refund(order: str, amount: int) -> dict[str, bool]:
        runs.append(("refund", order))
        return {"ok": True}

    return [book_car, cancel_car, refund]


def trip_agent(rt: Runtime) -> list[str]:
    """An agent that uses every entry point: plan and commit, a saga, a plain call."""
    p = rt.plan("refund", {"order": "A", "amount": 5}, correlation_id="trip")
    committed = rt.commit(p)
    with rt.saga("trip-7", correlation_id="trip") as saga:
        step = saga.call("book_car", {"car": "c1"})
    plain = rt.call("refund", {"order": "B", "amount": 1}, correlation_id="trip")
    return [p.verdict, str(committed.status), str(step.status), saga.result, str(plain.status)]
