"""What `dar.integrations.otel.instrument` adds to a call, on an in-memory SQLite runtime.

A ``mutate-local`` tool with a no-op handler: fresh calls (each runs, is claimed and
logged) and cache hits (answered from the record). Three set-ups: no instrument; an
instrument whose spans are not sampled (no span is recorded, so the outcome row is not
read back); and an instrument whose spans are recorded into the SDK's in-memory exporter,
which reads each outcome row back for its chain hash. The last line is that read alone.
Best of ROUNDS rounds of CALLS calls, as calls per second.

    PYTHONPATH=python python benches/bench_otel.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from dar import Effect, Runtime, tool
from dar.core.ops import LogFilter
from dar.integrations.otel import instrument

ROUNDS = 5
CALLS = 300


@tool(effect=Effect.MUTATE_LOCAL)
def note(text: str) -> str:
    """Keep a note."""
    return text


def rate(fn: Callable[[int], Any], first: int) -> float:
    """Calls per second of ``fn(i)`` over CALLS values of ``i`` from ``first``."""
    start = time.perf_counter()
    for i in range(first, first + CALLS):
        fn(i)
    return CALLS / (time.perf_counter() - start)


def one_round(rt: Runtime, first: int) -> tuple[float, float]:
    """(fresh, hit) calls per second of one round; fresh inputs start at ``first``."""
    fresh = rate(lambda i: rt.call("note", {"text": f"n-{i}"}), first)
    hit = rate(lambda i: rt.call("note", {"text": "warm"}), 0)
    return fresh, hit


def main() -> None:
    exporter = InMemorySpanExporter()
    recorded = TracerProvider()
    recorded.add_span_processor(SimpleSpanProcessor(exporter))

    def not_sampled(rt: Runtime) -> None:
        instrument(rt, tracer_provider=TracerProvider(sampler=ALWAYS_OFF))

    def exported(rt: Runtime) -> None:
        instrument(rt, tracer_provider=recorded)

    setups: dict[str, Callable[[Runtime], None]] = {
        "no instrument": lambda rt: None,
        "instrumented, not sampled": not_sampled,
        "instrumented, recorded": exported,
    }
    runtimes = {name: Runtime("sqlite://:memory:", tools=[note]) for name in setups}
    best: dict[str, list[float]] = {name: [0.0, 0.0] for name in setups}
    for name, rt in runtimes.items():
        setups[name](rt)
        rt.call("note", {"text": "warm"})
    # Rounds alternate between the set-ups, so a busy moment of the machine hits them all.
    for r in range(ROUNDS):
        for name, rt in runtimes.items():
            fresh, hit = one_round(rt, r * CALLS)
            best[name] = [max(best[name][0], fresh), max(best[name][1], hit)]
            exporter.clear()
    print(f"{'calls/s':<28}{'fresh':>10}{'hit':>10}")
    for name, (fresh, hit) in best.items():
        print(f"{name:<28}{fresh:>10.0f}{hit:>10.0f}")
    plain = runtimes["no instrument"]
    ids = [e.event_id for e in plain.events(status="executed")]
    read = max(
        rate(lambda i: plain.store.events(LogFilter(event_id=ids[i % len(ids)])), 0)
        for _ in range(ROUNDS)
    )
    print(f"{'the row read alone':<28}{read:>10.0f}")
    for rt in runtimes.values():
        rt.close()


if __name__ == "__main__":
    main()
