"""What every integration does with a turn's tool calls, written once.

A turn is a list of (tool name, arguments) pairs in the model's order. Each runs through
`rt.call`, and the model reads `for_model()` of each, in the same order. With an
`AsyncRuntime` the calls of one turn run concurrently: the runtime makes identical calls
among them execute once, so a model that repeats itself inside a turn causes one effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dar.context import model_tool_call
from dar.records import Result
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

#: A tool call as the model made it: the tool's name and its arguments (JSON text, a dict
#: or None), exactly as the SDK handed them over, so the runtime judges what was sent.
Call = tuple[str, Any]


def results(
    rt: Runtime, calls: Sequence[Call], ids: Sequence[str | None], correlation_id: str | None
) -> list[Result]:
    """Run the calls one after the other, each under the model's id for it; an identical
    later call answers from the record."""
    done = []
    for (name, args), call_id in zip(calls, ids, strict=True):
        with model_tool_call(call_id):
            done.append(rt.call(name, args, correlation_id=correlation_id))
    return done


async def aresults(
    art: AsyncRuntime,
    calls: Sequence[Call],
    ids: Sequence[str | None],
    correlation_id: str | None,
) -> list[Result]:
    """Run the calls concurrently, as the model asked for them together."""

    async def one(name: str, args: Any, call_id: str | None) -> Result:
        with model_tool_call(call_id):  # each task has its own copy of the context
            return await art.call(name, args, correlation_id=correlation_id)

    return list(await asyncio.gather(*(one(n, a, i) for (n, a), i in zip(calls, ids, strict=True))))


def run_calls(
    rt: Runtime, calls: Sequence[Call], ids: Sequence[str | None], correlation_id: str | None
) -> list[ModelReply]:
    """What the model reads of each call, in its order."""
    return [r.for_model() for r in results(rt, calls, ids, correlation_id)]


async def arun_calls(
    art: AsyncRuntime,
    calls: Sequence[Call],
    ids: Sequence[str | None],
    correlation_id: str | None,
) -> list[ModelReply]:
    """`run_calls` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    return [r.for_model() for r in await aresults(art, calls, ids, correlation_id)]
