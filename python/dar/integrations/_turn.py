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

from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

#: A tool call as the model made it: the tool's name and its arguments (JSON text, a dict
#: or None), exactly as the SDK handed them over, so the runtime judges what was sent.
Call = tuple[str, Any]


def run_calls(rt: Runtime, calls: Sequence[Call], correlation_id: str | None) -> list[ModelReply]:
    """Run the calls one after the other; an identical later call answers from the record."""
    return [rt.call(name, args, correlation_id=correlation_id).for_model() for name, args in calls]


async def arun_calls(
    art: AsyncRuntime, calls: Sequence[Call], correlation_id: str | None
) -> list[ModelReply]:
    """Run the calls concurrently, as the model asked for them together."""
    results = await asyncio.gather(
        *(art.call(name, args, correlation_id=correlation_id) for name, args in calls)
    )
    return [r.for_model() for r in results]
