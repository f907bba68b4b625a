"""Anthropic Messages: a turn's ``tool_use`` blocks in, the ``tool_result`` message out, and a
client whose model calls a durable run journals.

Anthropic carries an error flag on each tool result, so a refusal, a failure or an unknown
tool reaches the model marked ``is_error`` with the runtime's wording of why. The user's
loop stays theirs: call the API, and while ``stop_reason == "tool_use"`` append the
assistant turn and what `run_tool_uses` returns.

`durable(client)` (an ``Anthropic`` or an ``AsyncAnthropic``) journals, inside a run of
``@dar.agent``, every ``client.messages.create(...)`` (also with ``stream=True``) and
``client.messages.stream(...)``: a resumed run gets the recorded ``Message`` (or the
recorded stream events, as the SDK's event types) back without asking the model again::

    client = dar_anthropic.durable(anthropic.Anthropic())

    @dar.agent
    def shop(request: str) -> str:
        messages = [{"role": "user", "content": request}]
        while True:
            message = client.messages.create(
                model="claude-sonnet-5", max_tokens=1024, messages=messages,
                tools=dar_anthropic.tools(rt),
            )
            if message.stop_reason != "tool_use":
                return "".join(b.text for b in message.content if b.type == "text")
            messages += [
                {"role": "assistant", "content": message.content},
                dar_anthropic.run_tool_uses(rt, message),
            ]

    rt.start(shop, "conv-1", "Order 2 tea")  # after a crash: rt.resume()

``messages.stream(...)`` returns the SDK's own ``MessageStreamManager`` over the journaled
events, so ``text_stream``, ``get_final_message()`` and the rest work on a replay too; only
the HTTP response (``stream.response``, ``request_id``) is missing from a replayed stream.
It is journaled as the ``create(stream=True)`` of the same arguments is.

The request the journal compares is the call's keyword arguments as JSON (an SDK object
among them as the SDK sends it), less ``extra_headers``, ``extra_query`` and ``timeout``,
which change how the request travels, not what the model is asked (``extra_body`` counts).
Retries are the client's (``max_retries``), never an argument. A step's tokens are the
message's input, output and cache tokens (of a stream: as its ``message_start`` and last
``message_delta`` give them). A stream is recorded once read to its ``message_stop``; one
closed before that is not, and a resume asks again. A replayed object is the one received
but for its ``_request_id``, which only a live answer has.

Outside a run the durable client is the client. Inside one, only ``messages.create`` and
``messages.stream`` are journaled: ``client.beta.messages``, ``messages.parse()``,
``count_tokens`` and the batches are the SDK's own, live every time. ``with_options()``
and ``copy()`` return a durable client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from dar.integrations import require
from dar.integrations._durable_clients import (
    AsyncStream,
    Model,
    SyncStream,
    Wrapper,
    is_async,
    model_method,
    received,
    request_of,
    rewrapping,
    sent,
    settled,
    usage_sum,
    wrapped,
)
from dar.integrations._turn import Call, arun_calls, run_calls
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.journal import running
from dar.runtime.sync import Runtime

_anthropic = require("anthropic", "anthropic")
_types = require("anthropic.types", "anthropic")
_beta = require("anthropic.types.beta", "anthropic")
_streaming = require("anthropic.lib.streaming", "anthropic")
# How the SDK itself builds its objects from the JSON it receives: leniently, as it accepts
# them live (``model_validate`` would refuse a response that lacks a field it requires).
_construct = require("anthropic._models", "anthropic").construct_type

Client = TypeVar("Client")

#: Keyword arguments that change how a request travels, not what the model is asked.
TRANSPORT = frozenset({"extra_headers", "extra_query", "timeout"})
#: The token counts of a ``Usage``: the input, the output and the cache's.
TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def tools(rt: Runtime | AsyncRuntime) -> list[dict[str, Any]]:
    """The runtime's tools, as ``tools=`` for ``messages.create``."""
    return rt.tool_schemas("anthropic")


def run_tool_uses(
    rt: Runtime, message: Any, *, correlation_id: str | None = None
) -> dict[str, Any]:
    """Run every ``tool_use`` block of ``message`` (a ``Message``) and return the user
    message holding one ``tool_result`` per block, in the same order."""
    ids, calls = _read(message)
    return _reply(ids, run_calls(rt, calls, ids, correlation_id))


async def arun_tool_uses(
    art: AsyncRuntime, message: Any, *, correlation_id: str | None = None
) -> dict[str, Any]:
    """``run_tool_uses`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    ids, calls = _read(message)
    return _reply(ids, await arun_calls(art, calls, ids, correlation_id))


def _read(message: Any) -> tuple[list[str], list[Call]]:
    if not isinstance(message, (_types.Message, _beta.BetaMessage)):
        raise TypeError(f"expected an anthropic Message, not {type(message).__name__}")
    uses = [b for b in message.content if b.type == "tool_use"]
    return [u.id for u in uses], [(u.name, u.input) for u in uses]


def _reply(ids: Sequence[str], replies: Sequence[ModelReply]) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": i, "content": r.text, "is_error": r.is_error}
            for i, r in zip(ids, replies, strict=True)
        ],
    }


def durable(client: Client) -> Client:
    """``client`` (an ``Anthropic`` or ``AsyncAnthropic``), with its model calls journaled
    in a durable run (see the module). It passes for the client (``isinstance``), and
    outside a run it is the client."""
    if wrapped(client):
        return client

    def messages(resource: Any) -> Wrapper:
        asynchronous = is_async(resource.create)
        return Wrapper(
            resource,
            {
                "create": lambda create: model_method(_MESSAGES, create, "flag"),
                "stream": lambda stream: _streamed(stream, asynchronous),
            },
        )

    wrap = {"messages": messages, "with_options": rewrapping(durable), "copy": rewrapping(durable)}
    return cast("Client", Wrapper(client, wrap))


def _streamed(stream: Callable[..., Any], asynchronous: bool) -> Callable[..., Any]:
    """``messages.stream``, journaled in a run: the SDK's own stream manager, reading the
    journaled events (live: the raw events of the SDK's own request)."""

    @functools.wraps(stream)
    def call(*args: Any, **kwargs: Any) -> Any:
        if args or running() is None:
            return stream(*args, **kwargs)
        kwargs = settled(kwargs)
        request = _request({**kwargs, "stream": True})
        output_format = kwargs.get("output_format", _anthropic.NOT_GIVEN)
        # Live, the raw events of the SDK's own request (its manager, entered, sends it).
        if asynchronous:

            async def araw() -> Any:
                return (await stream(**kwargs).__aenter__())._raw_stream

            return _streaming.AsyncMessageStreamManager(
                AsyncStream.open(_MESSAGES, request, kwargs, araw, primed=True),
                output_format=output_format,
            )

        def raw() -> Any:
            return stream(**kwargs).__enter__()._raw_stream

        return _streaming.MessageStreamManager(
            lambda: SyncStream.open(_MESSAGES, request, kwargs, raw, primed=True),
            output_format=output_format,
        )

    return call


def _request(kwargs: dict[str, Any]) -> dict[str, Any]:
    return request_of(
        kwargs, ignored=TRANSPORT, omitted=(_anthropic.NotGiven, _anthropic.Omit), dump=sent
    )


def _stream_usage(events: list[Any]) -> int:
    """A stream's tokens: its ``message_start`` usage, as each ``message_delta`` updates it."""
    counts: dict[str, int] = {}
    for event in events:
        if event.type == "message_start":
            usage = event.message.usage
        elif event.type == "message_delta":
            usage = event.usage
        else:
            continue
        for name in TOKENS:
            value = getattr(usage, name, None)
            if value is not None:
                counts[name] = int(value)
    return sum(counts.values())


_MESSAGES = Model(
    name="anthropic.messages",
    request=_request,
    encode=received,
    response=lambda value, kwargs: _construct(type_=_types.Message, value=value),
    tokens=lambda message: usage_sum(message.usage, *TOKENS),
    chunk=lambda value, kwargs: _construct(type_=_types.RawMessageStreamEvent, value=value),
    stream_tokens=_stream_usage,
    last=lambda event: event.type == "message_stop",
)
