"""Guarded tools and the bodies of guard races, importable by name from spawned processes."""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections.abc import Sequence
from typing import Any

from dar import AsyncRuntime, Budget, Effect, Runtime, Similar, Status, tool

LIMIT = 500.0


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Budget(LIMIT, of="amount", per=("customer_id",), within="24h")],
)
def refund(customer_id: str, order_id: str, amount: float) -> dict[str, Any]:
    return {"refunded": amount, "order_id": order_id}


@tool(
    effect=Effect.MUTATE_EXTERNAL,
    guards=[Similar("message", same=("to",), within="10m", scope="global")],
)
def send_message(to: str, message: str) -> dict[str, Any]:
    return {"sent": message}


class CountingEmbedder:
    """A stand-in for a provider's embeddings API: a bag of hashed words, and how many
    texts it was asked to embed."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            self.texts.extend(texts)
        return [bag_of_words(t) for t in texts]


def bag_of_words(text: str, size: int = 64) -> list[float]:
    vector = [0.0] * size
    for word in text.lower().replace("!", " ").replace(":", " ").split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % size] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def refund_worker(url: str, worker: int, calls: int, amount: float, barrier: Any, out: Any) -> None:
    """One racing process: wait at the barrier, then ask for ``calls`` refunds."""
    rt = Runtime(url, wait=60)
    barrier.wait()
    for i in range(calls):
        res = rt.execute(
            refund, {"customer_id": "C-1", "order_id": f"W{worker}-{i}", "amount": amount}
        )
        out.put(res.status.value)
    rt.close()


def message_worker(url: str, message: str, barrier: Any, out: Any) -> None:
    """One process sending ``message`` (the default offline embedder) at the barrier."""
    rt = Runtime(url, tools=[send_message], wait=60)
    barrier.wait()
    res = rt.execute(send_message, {"to": "+34600000001", "message": message})
    out.put(res.status.value)
    rt.close()


def refund_threads(rt: Runtime, threads: int, calls: int, amount: float) -> list[Status]:
    """Refunds raced from ``threads`` threads of one runtime."""
    statuses: list[Status] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(calls):
            inp = {"customer_id": "C-1", "order_id": f"T{t}-{i}", "amount": amount}
            status = rt.execute(refund, inp).status
            with lock:
                statuses.append(status)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return statuses


async def refund_tasks(rt: AsyncRuntime, tasks: int, amount: float) -> list[Status]:
    """Refunds raced from ``tasks`` asyncio tasks of one runtime."""
    results = await asyncio.gather(
        *(
            rt.execute(refund, {"customer_id": "C-1", "order_id": f"A{t}", "amount": amount})
            for t in range(tasks)
        )
    )
    return [r.status for r in results]
