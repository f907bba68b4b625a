"""OpenAI Chat Completions and Responses: the model's tool calls in, the messages to send back
out, and a client whose model calls a durable run journals.

The user keeps their own loop and their own client; this module only reads the tool calls
off the SDK's objects and turns each `Result` into the message the API expects next. The
arguments go to the runtime as the JSON text the model wrote, so broken JSON or a wrong type
is refused and logged like any other call, and the model reads why.

`durable(client)` (an ``OpenAI`` or an ``AsyncOpenAI``) journals, inside a run of
``@dar.agent``, every ``client.chat.completions.create(...)`` and
``client.responses.create(...)``, streamed (``stream=True``) or not: a resumed run gets the
recorded ``ChatCompletion`` / ``Response`` (or the recorded chunks, as
``ChatCompletionChunk`` / Responses events) back without asking the model again::

    client = dar_openai.durable(openai.OpenAI())

    @dar.agent
    def shop(request: str) -> str | None:
        messages = [{"role": "user", "content": request}]
        while True:
            completion = client.chat.completions.create(
                model="gpt-5", messages=messages, tools=dar_openai.tools(rt)
            )
            replies = dar_openai.run_tool_calls(rt, completion)
            if not replies:
                return completion.choices[0].message.content
            messages += [completion.choices[0].message, *replies]

    rt.start(shop, "conv-1", "Order 2 tea")  # after a crash: rt.resume()

The request the journal compares is the call's keyword arguments as JSON (an SDK object
among them as the SDK sends it), less ``extra_headers``, ``extra_query`` and ``timeout``,
which change how the request travels, not what the model is asked (``extra_body`` counts).
Retries are the client's (``max_retries``), never an argument. A step's tokens are the
response's ``usage.total_tokens`` (a Chat Completions stream has usage only with
``stream_options={"include_usage": True}``). A stream is recorded once read to its end, or
to the chunk that completes it; one closed before that is not, and a resume asks again. A
replayed object is the one received but for its ``_request_id``, which only a live answer
has.

Outside a run the durable client is the client. Inside one, only those two methods are
journaled: the ``stream()`` and ``parse()`` helpers, ``with_raw_response`` and the other
endpoints are the SDK's own, live every time. ``with_options()`` and ``copy()`` return a
durable client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, cast

from dar.integrations import require
from dar.integrations._durable_clients import (
    Model,
    Wrapper,
    model_method,
    received,
    request_of,
    rewrapping,
    sent,
    usage_sum,
    wrapped,
)
from dar.integrations._turn import Call, arun_calls, run_calls
from dar.reply import ModelReply
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime
from dar.speculate import Branch, Candidate

_openai = require("openai", "openai")
_chat = require("openai.types.chat", "openai")
_responses = require("openai.types.responses", "openai")
# How the SDK itself builds its objects from the JSON it receives: leniently, as it accepts
# them live (``model_validate`` would refuse a response that lacks a field it requires).
_construct = require("openai._models", "openai").construct_type

Api = Literal["chat", "responses"]
Client = TypeVar("Client")

#: Keyword arguments that change how a request travels, not what the model is asked.
TRANSPORT = frozenset({"extra_headers", "extra_query", "timeout"})


def tools(rt: Runtime | AsyncRuntime, api: Api = "chat") -> list[dict[str, Any]]:
    """The runtime's tools, as ``tools=`` for ``chat.completions.create`` (``api="chat"``)
    or ``responses.create`` (``api="responses"``)."""
    if api not in ("chat", "responses"):
        raise ValueError(f"api must be 'chat' or 'responses', not {api!r}")
    return rt.tool_schemas(f"openai-{api}")


def run_tool_calls(
    rt: Runtime, turn: Any, *, correlation_id: str | None = None
) -> list[dict[str, Any]]:
    """Run every tool call of a model turn and return what to append to the conversation.

    ``turn`` is a ``ChatCompletion`` or its ``ChatCompletionMessage`` (the result is one
    ``{"role": "tool", ...}`` message per call), or a Responses ``Response`` (one
    ``function_call_output`` item per call). An empty list means the model called nothing.
    """
    api, ids, calls = _read(turn)
    return _replies(api, ids, run_calls(rt, calls, ids, correlation_id))


async def arun_tool_calls(
    art: AsyncRuntime, turn: Any, *, correlation_id: str | None = None
) -> list[dict[str, Any]]:
    """``run_tool_calls`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    api, ids, calls = _read(turn)
    return _replies(api, ids, await arun_calls(art, calls, ids, correlation_id))


def _read(turn: Any) -> tuple[Api, list[str], list[Call]]:
    """The API the turn came from, its call ids and its calls, in the model's order."""
    if isinstance(turn, _responses.Response):
        items = [i for i in turn.output if i.type == "function_call"]
        return "responses", [i.call_id for i in items], [(i.name, i.arguments) for i in items]
    if isinstance(turn, _chat.ChatCompletion):
        turn = turn.choices[0].message  # the one choice a tool loop continues
    if isinstance(turn, _chat.ChatCompletionMessage):
        tool_calls = turn.tool_calls or []
        return "chat", [c.id for c in tool_calls], [_chat_call(c) for c in tool_calls]
    raise TypeError(
        "expected a ChatCompletion, a ChatCompletionMessage or a Responses Response, "
        f"not {type(turn).__name__}"
    )


def _chat_call(call: Any) -> Call:
    # A custom tool's free-form input goes as it is; the runtime refuses what is not JSON.
    if call.type == "custom":
        return call.custom.name, call.custom.input
    return call.function.name, call.function.arguments


def _replies(api: Api, ids: Sequence[str], replies: Sequence[ModelReply]) -> list[dict[str, Any]]:
    # Neither API has an error flag for a tool result: the text says it was refused or failed.
    if api == "responses":
        return [
            {"type": "function_call_output", "call_id": i, "output": r.text}
            for i, r in zip(ids, replies, strict=True)
        ]
    return [
        {"role": "tool", "tool_call_id": i, "content": r.text}
        for i, r in zip(ids, replies, strict=True)
    ]


def proposer(
    client: Any, *, model: str, messages: Sequence[Any], n: int = 4, **create: Any
) -> Callable[[Branch], list[Candidate]]:
    """A ``propose`` for `rt.speculate`: asks the model (Chat Completions) for ``n``
    samples of its next move from ``messages`` and the branch so far (each step sent as
    the tool call and its result, a plan's preview included), and returns every tool call
    sampled as a `Candidate`, each distinct call once, in the order the model gave them.
    ``create`` goes to ``client.chat.completions.create`` as it is (``tools=`` above all)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")

    def propose(branch: Branch) -> list[Candidate]:
        asked = [*messages, *_branch_messages(branch)]
        completion = client.chat.completions.create(model=model, messages=asked, n=n, **create)
        found: dict[str, Candidate] = {}
        for choice in completion.choices:
            for call in choice.message.tool_calls or ():
                candidate = Candidate(*_chat_call(call))
                found.setdefault(candidate.identity, candidate)
        return list(found.values())

    return propose


def _branch_messages(branch: Branch) -> list[dict[str, Any]]:
    """The branch as the conversation goes on: each step a tool call and its reply."""
    sent: list[dict[str, Any]] = []
    for i, step in enumerate(branch.path):
        c, call_id = step.candidate, f"branch_{i}"
        arguments = c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)
        call = {"id": call_id, "type": "function",
                "function": {"name": c.tool, "arguments": arguments}}  # fmt: skip
        sent.append({"role": "assistant", "content": None, "tool_calls": [call]})
        sent.append(
            {"role": "tool", "tool_call_id": call_id, "content": step.result.for_model().text}
        )
    return sent


#: What the judge is asked before the path (the goal follows).
JUDGE = (
    "You judge a path of tool calls an agent might take; nothing in it has happened yet. "
    "Effects show what they would do. Answer with one number from 0 (worst) to 1 (best) "
    "for how well the path ends against the goal, and nothing else."
)


def llm_judge(client: Any, *, model: str, goal: str, **create: Any) -> Callable[[Branch], float]:
    """A ``score`` for `rt.speculate` that asks the model to rate a branch against
    ``goal``; an answer without a number from 0 to 1 raises, naming the answer."""

    def score(branch: Branch) -> float:
        lines = [
            f"{i + 1}. {s.candidate.tool} {s.candidate.arguments!r} -> {s.result.for_model().text}"
            for i, s in enumerate(branch.path)
        ]
        asked = [
            {"role": "system", "content": JUDGE},
            {"role": "user", "content": f"Goal: {goal}\nPath:\n" + "\n".join(lines)},
        ]
        completion = client.chat.completions.create(model=model, messages=asked, **create)
        text = completion.choices[0].message.content or ""
        found = re.search(r"\d+(?:\.\d+)?", text)
        if found is None or not 0.0 <= float(found.group()) <= 1.0:
            raise ValueError(f"the judge gave no number from 0 to 1: {text[:200]!r}")
        return float(found.group())

    return score


def durable(client: Client) -> Client:
    """``client`` (an ``OpenAI`` or ``AsyncOpenAI``), with its model calls journaled in a
    durable run (see the module). It passes for the client (``isinstance``), and outside a
    run it is the client."""
    if wrapped(client):
        return client
    completions = {"create": lambda create: model_method(_CHAT, create, "flag")}
    return cast(
        "Client",
        Wrapper(
            client,
            {
                "chat": lambda chat: Wrapper(
                    chat, {"completions": lambda c: Wrapper(c, completions)}
                ),
                "responses": lambda responses: Wrapper(
                    responses, {"create": lambda create: model_method(_RESPONSES, create, "flag")}
                ),
                "with_options": rewrapping(durable),
                "copy": rewrapping(durable),
            },
        ),
    )


def _request(kwargs: dict[str, Any]) -> dict[str, Any]:
    return request_of(
        kwargs, ignored=TRANSPORT, omitted=(_openai.NotGiven, _openai.Omit), dump=sent
    )


def _last_usage(chunks: list[Any]) -> int:
    """A Chat Completions stream's tokens: the usage its last chunk carries, if asked for."""
    return next((usage_sum(c.usage, "total_tokens") for c in reversed(chunks) if c.usage), 0)


def _stream_usage(events: list[Any]) -> int:
    """A Responses stream's tokens: the usage of the response its last event completes."""
    for event in reversed(events):
        response = getattr(event, "response", None)
        if response is not None and response.usage is not None:
            return usage_sum(response.usage, "total_tokens")
    return 0


#: The events that end a Responses stream.
_ENDED = frozenset({"response.completed", "response.incomplete", "response.failed"})

_CHAT = Model(
    name="openai.chat.completions",
    request=_request,
    encode=received,
    response=lambda value, kwargs: _construct(type_=_chat.ChatCompletion, value=value),
    tokens=lambda completion: usage_sum(completion.usage, "total_tokens"),
    chunk=lambda value, kwargs: _construct(type_=_chat.ChatCompletionChunk, value=value),
    stream_tokens=_last_usage,
    # The usage chunk, or the finish of every choice (the usage chunk may follow).
    last=lambda chunk: (
        chunk.usage is not None
        or (bool(chunk.choices) and all(c.finish_reason is not None for c in chunk.choices))
    ),
)

_RESPONSES = Model(
    name="openai.responses",
    request=_request,
    encode=received,
    response=lambda value, kwargs: _construct(type_=_responses.Response, value=value),
    tokens=lambda response: usage_sum(response.usage, "total_tokens"),
    chunk=lambda value, kwargs: _construct(type_=_responses.ResponseStreamEvent, value=value),
    stream_tokens=_stream_usage,
    last=lambda event: event.type in _ENDED,
)
