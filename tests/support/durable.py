"""What the tests of the SDKs' ``durable(client)`` share: the world a durable agent's loop
runs in (its client, its runtime, when the process "crashes") and a crash with its resume.

A durable agent is found again by its name when a run resumes, so it is a module-level
function; what differs from test to test reaches it through `WORLD`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest

from dar import AsyncRuntime, RunRecord, RunResult, Runtime
from dar.demo.scripted_model import ModelServer
from tests.support.shop import CONVERSATION

#: Seconds a run's worker holds it: short, so that a "crashed" run is taken over at once.
LEASE = 0.2
#: The model turns the first run gets before the crash: the tool calls, then the coffee.
CRASH_AFTER = 2
#: Every model turn of the shop's script answers with usage of 2 tokens.
TOKENS_PER_TURN = 2


@dataclass
class World:
    """What a durable agent's loop uses: the (durable) client and the runtime; the model it
    asks for and the transport options it passes (``timeout``, headers: the resumed
    process passes ``after_crash`` instead, which must not make it diverge); when it
    "crashes"; and every model turn it got (a stream: its chunks)."""

    client: Any
    rt: Runtime | AsyncRuntime
    model: str = "test-model"
    transport: dict[str, Any] = field(default_factory=dict)
    after_crash: dict[str, Any] = field(default_factory=dict)
    crash_after: int | None = None
    turns: list[Any] = field(default_factory=list)

    def turned(self, turn: Any) -> None:
        """The loop got a whole model turn: keep it, and after the ``crash_after``-th one
        (once), stop the process as a kill would: nothing after it runs, nothing ends."""
        self.turns.append(turn)
        if self.crash_after is not None and len(self.turns) >= self.crash_after:
            self.crash_after = None
            self.transport = self.after_crash
            raise KeyboardInterrupt


WORLD: ContextVar[World] = ContextVar("world")


@contextmanager
def world(client: Any, rt: Runtime | AsyncRuntime, **given: Any) -> Iterator[World]:
    made = World(client, rt, **given)
    token = WORLD.set(made)
    try:
        yield made
    finally:
        WORLD.reset(token)


def crash_and_resume(rt: Runtime, agent: Any, *args: Any) -> RunResult:
    """Start the run, which "crashes"; once its lease ran out, resume it."""
    with pytest.raises(KeyboardInterrupt):
        rt.start(agent, CONVERSATION, *args, lease=LEASE)
    time.sleep(LEASE)
    (resumed,) = rt.resume(lease=LEASE)
    return resumed


async def acrash_and_resume(rt: AsyncRuntime, agent: Any, *args: Any) -> RunResult:
    with pytest.raises(KeyboardInterrupt):
        await rt.start(agent, CONVERSATION, *args, lease=LEASE)
    time.sleep(LEASE)
    (resumed,) = await rt.resume(lease=LEASE)
    return resumed


def kinds(turns: list[Any]) -> list[Any]:
    """The types of the model turns (of each chunk, for a stream)."""
    return [[type(c) for c in t] if isinstance(t, list) else type(t) for t in turns]


def check_resumed(
    server: ModelServer, reference: ModelServer, run: RunRecord, crashed: World, whole: World
) -> None:
    """After the crash and the resume: the model was asked each request once, the very ones
    the run that never crashed asked (so replayed turns were sent back as live ones are),
    the resumed run got the same types, and the journal counted the tokens."""
    assert len(server.requests) == len(reference.requests) == 3
    assert [r.body for r in server.requests] == [r.body for r in reference.requests]
    resumed = crashed.turns[CRASH_AFTER:]
    assert len(resumed) == 3  # two answered by the journal, the last one live
    assert kinds(resumed) == kinds(whole.turns)
    assert run.tokens == 3 * TOKENS_PER_TURN
    assert run.tokens_saved == CRASH_AFTER * TOKENS_PER_TURN
