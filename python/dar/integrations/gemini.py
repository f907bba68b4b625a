"""Google Gen AI (Gemini): a response's function calls in, the function responses out, and a
client whose model calls a durable run journals.

Gemini has no error flag on a function response. A function response is built as the SDK's
own automatic function calling builds it: ``{"result": <the tool's output>}``, the output as
the JSON value it is (an object stays an object), and ``{"error": "..."}`` for a refusal or
a failure. A call answered from the record gets the same response as the call that ran. The
answer is a ``Content`` with role ``"user"``, the role the SDK gives function responses.

`durable(client)` (a ``genai.Client``) journals, inside a run of ``@dar.agent``, every
``client.models.generate_content(...)`` and ``generate_content_stream(...)`` and their
async twins on ``client.aio.models``: a resumed run gets the recorded
``GenerateContentResponse`` (or the recorded chunks, each one) back without asking the
model again::

    client = dar_gemini.durable(genai.Client())

    @dar.agent
    def shop(request: str) -> str | None:
        config = types.GenerateContentConfig(tools=dar_gemini.tools(rt))
        contents = [types.Content(role="user", parts=[types.Part(text=request)])]
        while True:
            response = client.models.generate_content(
                model="gemini-3-flash", contents=contents, config=config
            )
            if not response.function_calls:
                return response.text
            contents += [
                response.candidates[0].content,
                dar_gemini.run_function_calls(rt, response),
            ]

    rt.start(shop, "conv-1", "Order 2 tea")  # after a crash: rt.resume()

The request the journal compares is ``model``, ``contents`` (as the SDK reads them into
``Content``s) and ``config`` as JSON, less ``config.http_options`` (timeout, headers, base
URL, retries), which changes how the request travels, not what the model is asked. A
function given as a tool (automatic function calling) counts by its qualified name, and so
does a class given as ``response_schema``; the calls the SDK makes for it belong to the
one journaled step, so a resumed run does not call those functions again. A response is
rebuilt as the SDK builds it, ``parsed`` included (read again from its text against the
``response_schema`` of the call). A step's tokens are ``usage_metadata.total_token_count``
(of a stream: its last chunk's). A stream is recorded once read to its end, or to the
chunk with a finish reason; one left before that is not, and a resume asks again.

Outside a run the durable client is the client. Inside one, only those methods are
journaled: ``client.chats``, ``count_tokens``, the live API and the other endpoints are
the SDK's own, live every time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from dar.effects import Status
from dar.integrations import require
from dar.integrations._durable_clients import (
    Model,
    Wrapper,
    model_method,
    request_of,
    usage_sum,
    wrapped,
)
from dar.integrations._turn import Call, aresults, results
from dar.records import Result
from dar.runtime.aio import AsyncRuntime
from dar.runtime.sync import Runtime

_types = require("google.genai.types", "gemini", "google-genai")
# How the SDK reads ``contents`` (a string, a Part, a PIL image, dicts) into ``Content``s.
_transformers = require("google.genai._transformers", "gemini", "google-genai")

Client = TypeVar("Client")

#: What of ``config`` changes how a request travels, not what the model is asked.
TRANSPORT = frozenset({"http_options"})


def tools(rt: Runtime | AsyncRuntime) -> list[Any]:
    """The runtime's tools as ``types.Tool`` objects, for ``GenerateContentConfig(tools=...)``."""
    return [_types.Tool.model_validate(t) for t in rt.tool_schemas("gemini")]


def run_function_calls(rt: Runtime, response: Any, *, correlation_id: str | None = None) -> Any:
    """Run every function call of ``response`` (a ``GenerateContentResponse``) and return the
    ``types.Content`` to append to the contents: one function response per call, in order.
    Check ``response.function_calls`` first: without calls the turn is the model's answer."""
    ids, calls = _read(response)
    done = results(rt, calls, ids, correlation_id)
    return _content(ids, calls, done)


async def arun_function_calls(
    art: AsyncRuntime, response: Any, *, correlation_id: str | None = None
) -> Any:
    """``run_function_calls`` on an ``AsyncRuntime``: the turn's calls run concurrently."""
    ids, calls = _read(response)
    done = await aresults(art, calls, ids, correlation_id)
    return _content(ids, calls, done)


def _read(response: Any) -> tuple[list[str | None], list[Call]]:
    if not isinstance(response, _types.GenerateContentResponse):
        raise TypeError(f"expected a GenerateContentResponse, not {type(response).__name__}")
    fcs = response.function_calls or []
    return [fc.id for fc in fcs], [(fc.name, fc.args) for fc in fcs]


def _content(ids: Sequence[str | None], calls: Sequence[Call], results: Sequence[Result]) -> Any:
    parts = [
        _types.Part(
            function_response=_types.FunctionResponse(
                id=i,  # Gemini matches a response to its call by id where it sent one
                name=name,
                response=function_response(r),
            )
        )
        for i, (name, _), r in zip(ids, calls, results, strict=True)
    ]
    return _types.Content(role="user", parts=parts)


def function_response(result: Result) -> dict[str, Any]:
    """What the model reads: the recorded output itself under ``"result"`` (as the SDK's
    automatic function calling sends a function's return value), else dar's wording."""
    said = result.for_model()
    if said.is_error:
        return {"error": said.text}
    ran = result.status in (Status.EXECUTED, Status.CACHED)
    if ran and result.output_json is not None:
        return {"result": json.loads(result.output_json)}
    return {"result": said.text}  # a dry run's preview, an output that could not be recorded


def durable(client: Client) -> Client:
    """``client`` (a ``genai.Client``), with its model calls journaled in a durable run
    (see the module), on ``client.models`` and ``client.aio.models``. It passes for the
    client (``isinstance``), and outside a run it is the client."""
    if wrapped(client):
        return client

    def models(resource: Any) -> Wrapper:
        return Wrapper(
            resource,
            {
                "generate_content": lambda m: model_method(_GENERATE, m, "never"),
                "generate_content_stream": lambda m: model_method(_GENERATE_STREAM, m, "lazy"),
            },
        )

    return cast(
        "Client",
        Wrapper(client, {"models": models, "aio": lambda aio: Wrapper(aio, {"models": models})}),
    )


def _request(kwargs: dict[str, Any]) -> dict[str, Any]:
    contents = kwargs.get("contents")
    with contextlib.suppress(Exception):  # contents the SDK refuses, it refuses itself
        contents = _transformers.t_contents(contents)
    request = request_of({**kwargs, "contents": contents}, ignored=frozenset(), dump=_sent)
    config = request.get("config")
    if isinstance(config, dict):
        request["config"] = {k: v for k, v in config.items() if k not in TRANSPORT}
    return request


def _sent(model: Any) -> Any:
    return model.model_dump(mode="python", exclude_none=True)


def _json(response: Any) -> Any:
    # ``parsed`` is made from the text on the way back in, as the SDK makes it.
    return {k: v for k, v in response.to_json_dict().items() if k != "parsed"}


def _rebuilt(value: Any, kwargs: dict[str, Any]) -> Any:
    """A recorded response, built as the SDK builds one it receives: ``parsed`` read from
    its text against the call's ``response_schema`` (or ``response_json_schema``)."""
    config = kwargs.get("config")
    schemas = {
        name: config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        for name in ("response_schema", "response_json_schema")
    }
    return _types.GenerateContentResponse._from_response(response=value, kwargs={"config": schemas})


def _last_usage(chunks: list[Any]) -> int:
    """A stream's tokens: the usage of its last chunk that has one (each chunk has all)."""
    for chunk in reversed(chunks):
        if chunk.usage_metadata is not None and chunk.usage_metadata.total_token_count:
            return usage_sum(chunk.usage_metadata, "total_token_count")
    return 0


_GENERATE = Model(
    name="gemini.models.generate_content",
    request=_request,
    encode=_json,
    response=_rebuilt,
    tokens=lambda response: usage_sum(response.usage_metadata, "total_token_count"),
)

_GENERATE_STREAM = Model(
    name="gemini.models.generate_content_stream",
    request=_request,
    encode=_json,
    response=_rebuilt,
    tokens=lambda response: usage_sum(response.usage_metadata, "total_token_count"),
    chunk=_rebuilt,
    stream_tokens=_last_usage,
    last=lambda chunk: any(c.finish_reason is not None for c in chunk.candidates or []),
)
