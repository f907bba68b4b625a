"""What the ``durable(client)`` wrappers of the SDK modules share.

A durable client forwards every attribute to the SDK's client, except the few methods that
call the model. Inside a durable run (`dar.runtime.journal.running`) each call of those is
a journaled step of kind ``model``: the first run asks the model and records the response as
JSON; a resumed run gets the recorded response back, rebuilt as the SDK's own type, without
asking again. The request the journal compares is the call's keyword arguments as JSON,
less the transport-only ones. Outside a run the methods are the SDK's, called as they are.

A streamed call is journaled by `journaled_stream`: its chunks pass on as they arrive and
are recorded once the stream has been read to its end (or to the chunk that completes the
response: see `SyncStream`); a resumed run gets the recorded chunks back, as the SDK's
chunk types, from an object used the way the SDK's stream is (iterated, in a ``with``
block, closed).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import enum
import functools
import inspect
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import pydantic

from dar.runtime.journal import ajournaled, ajournaled_stream, journaled, journaled_stream, running

#: How a method streams: when its ``stream`` argument says so (the SDK sends the request at
#: the call), always and lazily (a generator: the request goes at the first chunk), or never.
Streams = Literal["flag", "lazy", "never"]


@dataclass(frozen=True)
class Model:
    """How the calls of one model method are journaled."""

    name: str  # the steps' name: "openai.chat.completions"
    request: Callable[[dict[str, Any]], Any]  # the keyword arguments -> the compared JSON
    encode: Callable[[Any], Any]  # a response, or one chunk of a stream -> JSON
    #: (JSON, the call's keyword arguments) -> the SDK's response type, as the SDK makes it
    response: Callable[[Any, dict[str, Any]], Any]
    tokens: Callable[[Any], int]  # the tokens a response used
    #: (JSON, the call's keyword arguments) -> the SDK's chunk type
    chunk: Callable[[Any, dict[str, Any]], Any] = lambda value, kwargs: value
    stream_tokens: Callable[[list[Any]], int] = lambda chunks: 0  # the tokens a stream used
    #: Whether a chunk completes the response (what may follow it is no more than usage)
    last: Callable[[Any], bool] = lambda chunk: False

    def recorded(self, value: Any) -> tuple[Any, int]:
        return self.encode(value), self.tokens(value)


class Wrapper:
    """Forwards every attribute to ``target`` but those named in ``wrap``, which it hands
    through ``wrap[name]`` first. It passes for the target's class (``isinstance``)."""

    __slots__ = ("_dar_target", "_dar_wrap")

    def __init__(self, target: Any, wrap: Mapping[str, Callable[[Any], Any]]) -> None:
        object.__setattr__(self, "_dar_target", target)
        object.__setattr__(self, "_dar_wrap", wrap)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._dar_target, name)
        make = self._dar_wrap.get(name)
        return value if make is None else make(value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._dar_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._dar_target, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # pass for the SDK's class
        return type(self._dar_target)

    def __dir__(self) -> Iterable[str]:
        return dir(self._dar_target)

    def __repr__(self) -> str:
        return f"durable({self._dar_target!r})"

    def __enter__(self) -> Any:
        self._dar_target.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._dar_target.__exit__(*exc)

    async def __aenter__(self) -> Any:
        await self._dar_target.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._dar_target.__aexit__(*exc)


def wrapped(value: Any) -> bool:
    """Whether ``value`` is a `Wrapper` already (a second one would journal twice)."""
    return type(value) is Wrapper


def rewrapping(durable: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """For a method that returns another client (``with_options``, ``copy``): the copy is
    durable too."""

    def make(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return durable(method(*args, **kwargs))

        return call

    return make


def is_async(method: Callable[..., Any]) -> bool:
    """Whether an SDK method is a coroutine function (under its decorators)."""
    return inspect.iscoroutinefunction(inspect.unwrap(method))


def model_method(model: Model, method: Callable[..., Any], streams: Streams) -> Callable[..., Any]:
    """The SDK's ``method``, journaled in a run (see the module)."""
    if is_async(method):

        @functools.wraps(method)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            if args or running() is None:  # the SDK's methods take keywords only
                return await method(*args, **kwargs)
            kwargs = settled(kwargs)
            request = model.request(kwargs)
            if streams == "lazy" or (streams == "flag" and kwargs.get("stream")):
                return await AsyncStream.open(
                    model, request, kwargs, lambda: method(**kwargs), primed=streams == "flag"
                )
            return await ajournaled(
                "model", model.name, request, lambda: method(**kwargs), model.recorded,
                lambda value: model.response(value, kwargs),
            )  # fmt: skip

        return acall

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if args or running() is None:
            return method(*args, **kwargs)
        kwargs = settled(kwargs)
        request = model.request(kwargs)
        if streams == "lazy" or (streams == "flag" and kwargs.get("stream")):
            return SyncStream.open(
                model, request, kwargs, lambda: method(**kwargs), primed=streams == "flag"
            )
        return journaled(
            "model", model.name, request, lambda: method(**kwargs), model.recorded,
            lambda value: model.response(value, kwargs),
        )  # fmt: skip

    return call


class SyncStream:
    """A model's stream inside a run: live chunks as they arrive (recorded at its end), or
    the recorded ones on a resume, as the SDK's chunk types. Iterate it, use it in a
    ``with`` block, ``close()`` it; while live, other attributes are the SDK stream's.

    A stream is recorded once it has been read to its end, and a caller often stops at the
    chunk that completes the response (``response.completed``, ``message_stop``) without
    reading on. So on that chunk (``Model.last``) the rest is read at once (nothing, or a
    usage chunk) and kept for the caller: the step is recorded whether or not it reads on.
    """

    def __init__(
        self, chunks: Generator[Any, None, None], live: list[Any], last: Callable[[Any], bool]
    ) -> None:
        self._chunks, self._live, self._last = chunks, live, last
        self._ahead: deque[Any] = deque()

    @classmethod
    def open(
        cls,
        model: Model,
        request: Any,
        kwargs: dict[str, Any],
        open_stream: Callable[[], Any],
        *,
        primed: bool,
    ) -> SyncStream:
        """``primed``: ask now (for the first chunk), as the SDK's call does; otherwise at
        the first chunk, as the SDK's generator does."""
        live: list[Any] = []

        def opened() -> Any:
            live.append(open_stream())
            return live[-1]

        chunks = journaled_stream(
            "model", model.name, request, opened, model.encode,
            lambda value: model.chunk(value, kwargs), model.stream_tokens,
        )  # fmt: skip
        made = cls(cast("Generator[Any, None, None]", chunks), live, model.last)
        if primed:
            with contextlib.suppress(StopIteration):
                made._ahead.appendleft(made._pull())
        return made

    def _pull(self) -> Any:
        chunk = next(self._chunks)
        if self._last(chunk):
            self._ahead.extend(self._chunks)
        return chunk

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Any:
        return self._ahead.popleft() if self._ahead else self._pull()

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop here: a stream cut short before its last chunk is not recorded."""
        self._ahead.clear()
        self._chunks.close()
        for stream in self._live:
            end = getattr(stream, "close", None)
            if end is not None:
                end()

    def __getattr__(self, name: str) -> Any:
        return _live_attribute(self.__dict__.get("_live"), name)


class AsyncStream:
    """`SyncStream` for the async clients: ``async for``, ``async with``, ``await close()``
    (and ``aclose()``, as on the async generators some SDKs return)."""

    def __init__(
        self, chunks: AsyncGenerator[Any, None], live: list[Any], last: Callable[[Any], bool]
    ) -> None:
        self._chunks, self._live, self._last = chunks, live, last
        self._ahead: deque[Any] = deque()

    @classmethod
    async def open(
        cls,
        model: Model,
        request: Any,
        kwargs: dict[str, Any],
        open_stream: Callable[[], Any],
        *,
        primed: bool,
    ) -> AsyncStream:
        live: list[Any] = []

        async def opened() -> Any:
            stream = open_stream()
            live.append(await stream if inspect.isawaitable(stream) else stream)
            return live[-1]

        chunks = ajournaled_stream(
            "model", model.name, request, opened, model.encode,
            lambda value: model.chunk(value, kwargs), model.stream_tokens,
        )  # fmt: skip
        made = cls(cast("AsyncGenerator[Any, None]", chunks), live, model.last)
        if primed:
            with contextlib.suppress(StopAsyncIteration):
                made._ahead.appendleft(await made._pull())
        return made

    async def _pull(self) -> Any:
        chunk = await self._chunks.__anext__()
        if self._last(chunk):
            self._ahead.extend([rest async for rest in self._chunks])
        return chunk

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        return self._ahead.popleft() if self._ahead else await self._pull()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop here: a stream cut short before its last chunk is not recorded."""
        self._ahead.clear()
        await self._chunks.aclose()
        for stream in self._live:
            end = getattr(stream, "close", None) or getattr(stream, "aclose", None)
            if end is not None:
                done = end()
                if inspect.isawaitable(done):
                    await done

    aclose = close

    def __getattr__(self, name: str) -> Any:
        return _live_attribute(self.__dict__.get("_live"), name)


def _live_attribute(live: list[Any] | None, name: str) -> Any:
    """An attribute of the SDK's stream (``response``, ...), which exists only while live."""
    if live is None or name.startswith("__"):
        raise AttributeError(name)
    if not live:
        raise AttributeError(
            f"the stream has no {name!r}: it is not open yet, or it was replayed from the "
            "journal, which keeps only its chunks"
        )
    return getattr(live[0], name)


# --- the request, as the journal compares it ------------------------------------------------


def settled(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments with every one-shot iterator (a generator of messages) read into a
    list, so that the request can be read twice: once as JSON, once by the SDK."""
    return {k: _settled(v) for k, v in kwargs.items()}


def _settled(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _settled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_settled(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_settled(v) for v in value)
    if isinstance(value, Iterator):
        return [_settled(v) for v in value]
    return value


def request_of(
    kwargs: Mapping[str, Any],
    *,
    ignored: frozenset[str],
    omitted: tuple[type, ...] = (),
    dump: Callable[[pydantic.BaseModel], Any],
) -> dict[str, Any]:
    """The keyword arguments as JSON, less the ``ignored`` ones and the SDK's "not given"
    sentinels (``omitted``); an SDK object among them as ``dump`` writes it."""
    return {
        k: jsonable(v, omitted, dump)
        for k, v in sorted(kwargs.items())
        if k not in ignored and not isinstance(v, omitted)
    }


def jsonable(value: Any, omitted: tuple[type, ...], dump: Callable[[Any], Any]) -> Any:
    """``value`` as JSON the journal can hash; a value with no JSON form is a TypeError
    (its ``repr`` could differ on a resume and make the run diverge for nothing)."""
    if isinstance(value, enum.Enum):
        return jsonable(value.value, omitted, dump)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, pydantic.BaseModel):
        return jsonable(dump(value), omitted, dump)
    if isinstance(value, Mapping):
        return {
            str(k): jsonable(v, omitted, dump)
            for k, v in value.items()
            if not isinstance(v, omitted)
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v, omitted, dump) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, type) or callable(value):  # a schema class, a function as a tool
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    raise TypeError(
        f"a {type(value).__name__} among a model call's arguments has no JSON form: "
        "the journal of the run cannot compare the request"
    )


def usage_sum(usage: Any, *fields: str) -> int:
    """The sum of the named token counts of a usage object (a missing or None one is 0)."""
    return sum(int(getattr(usage, f, None) or 0) for f in fields) if usage is not None else 0


def sent(model: Any) -> Any:
    """An object of the OpenAI or Anthropic SDK (both generated alike) in a request, as the
    SDK sends it: the fields it was given, by their API names."""
    return model.model_dump(
        mode="python",
        exclude_unset=True,
        by_alias=True,
        exclude=getattr(model, "__api_exclude__", None),
        warnings=False,
    )


def received(value: Any) -> Any:
    """A response of the OpenAI or Anthropic SDK as JSON: the fields the API sent, by their
    API names, so that rebuilt, the object is the one received."""
    return value.to_dict(mode="json", warnings=False)
