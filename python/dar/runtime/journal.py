"""The journal of a durable run, as the code inside the run meets it.

`journaled` (and `ajournaled` on an `AsyncRuntime`) wraps one non-deterministic step:
outside a run it only calls it; inside a run it numbers the step, answers it from the
journal when it was recorded with the same request, and otherwise runs it and records its
response before returning it. The integrations' ``durable(...)`` wrappers journal model
calls through it, the runtimes journal tool calls, and `step` journals any other value.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from dar._core import canonical_json
from dar.context import current_run
from dar.core import runs
from dar.core.decide import canonical_input
from dar.core.ops import Ops
from dar.core.runs import Journal
from dar.effects import Status
from dar.errors import CanonicalizationError
from dar.records import Result, RunRecord
from dar.redact import Redactor

#: What a step's row holds instead of its request where the runtime redacts.
WITHHELD = '{"withheld":"the runtime redacts personal fields: only the hash is kept"}'

#: ``encode(value) -> (JSON value, tokens)`` and ``decode(JSON value) -> value``.
Encode = Callable[[Any], tuple[Any, int]]
Decode = Callable[[Any], Any]


class StepLock:
    """A run's steps record one at a time, each on the run as the step before left it: the
    integrations run a model turn's tool calls concurrently (``asyncio.gather``), and two
    steps moving the run from the same version would make it lose itself (`RunLost`).
    ``with`` in a blocking run, ``async with`` in an async one."""

    def __init__(self) -> None:
        self._thread = threading.Lock()
        self._task: asyncio.Lock | None = None

    def __enter__(self) -> None:
        self._thread.acquire()

    def __exit__(self, *exc: object) -> None:
        self._thread.release()

    async def __aenter__(self) -> None:
        if self._task is None:
            self._task = asyncio.Lock()
        await self._task.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.release()


class Run:
    """A run in progress in this process: the runtime driving it, its record (moved on by
    every step, under ``lock``) and its journal."""

    def __init__(self, rt: Any, record: RunRecord, journal: Journal, lease: float) -> None:
        self.rt, self.record, self.journal, self.lease = rt, record, journal, lease
        # A request holds the conversation so far, tool outputs included: where a tool
        # redacts personal fields, the journal keeps only the request's hash.
        self.withhold = any(t.redactor is not None for t in rt.tools)
        self.lock = StepLock()
        self.taken = record.version  # the run's version when this worker took it

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.rt.execute)

    def step_ops(
        self, step: tuple[int, str, str, str, str], response: Any, tokens: int, started: float
    ) -> Ops[RunRecord]:
        ms = (time.perf_counter() - started) * 1000.0
        if self.withhold and step[1] != "tool":  # a tool's request redacts its own fields
            index, kind, name, _text, digest = step
            step = (index, kind, name, WITHHELD, digest)
        return runs.record_step(
            self.record, step, response, tokens, self.rt.clock(), self.lease, ms, self.taken
        )

    def write(
        self, step: tuple[int, str, str, str, str], response: Any, tokens: int, started: float
    ) -> Any:
        """Record a live step and move the run's record on; on an `AsyncRuntime`, an
        awaitable. Steps that end together (an async turn's tool calls run concurrently)
        are written one at a time, each from the record the previous one left: written at
        once, all but the first would lose the compare-and-set and stop the run."""
        if self.is_async:
            return self._awrite(step, response, tokens, started)
        with self.lock:
            self.record = self.rt._drive(self.step_ops(step, response, tokens, started))
        return None

    async def _awrite(
        self, step: tuple[int, str, str, str, str], response: Any, tokens: int, started: float
    ) -> None:
        async with self.lock:
            self.record = await self.rt._drive(self.step_ops(step, response, tokens, started))


@contextmanager
def outside_the_run() -> Iterator[None]:
    """While one step runs live, what it does inside (a tool handler's `dar.step`, a
    nested model call) is not a step of the run: a resume answers the step from the
    journal without running it, so nothing inside may take a number of the run."""
    token = current_run.set(None)
    try:
        yield
    finally:
        current_run.reset(token)


def running() -> Run | None:
    """The run the calling code is part of, if any."""
    found = current_run.get()
    return found if isinstance(found, Run) else None


def journaled(
    kind: str, name: str, request: Any, call: Callable[[], Any], encode: Encode, decode: Decode
) -> Any:
    """``call()``, journaled as step ``kind name`` of the current run (see the module)."""
    run = running()
    if run is None:
        return call()
    if run.is_async:
        raise TypeError(f"{kind} {name}: a blocking call inside an AsyncRuntime run: await it")
    index, text, digest, recorded = run.journal.next(kind, name, request)
    if recorded is not None:
        return decode(recorded.response)
    started = time.perf_counter()
    with outside_the_run(), run.journal.giving_back(index):
        value = call()
    response, tokens = encode(value)
    run.write((index, kind, name, text, digest), response, tokens, started)
    return value


async def ajournaled(
    kind: str, name: str, request: Any, call: Callable[[], Any], encode: Encode, decode: Decode
) -> Any:
    """`journaled` for a run on an `AsyncRuntime`: ``call()`` may return an awaitable."""
    run = running()
    if run is None or not run.is_async:
        if run is not None:
            raise TypeError(f"{kind} {name}: an async call inside a blocking Runtime run")
        value = call()
        return await value if inspect.isawaitable(value) else value
    index, text, digest, recorded = run.journal.next(kind, name, request)
    if recorded is not None:
        return decode(recorded.response)
    started = time.perf_counter()
    with outside_the_run(), run.journal.giving_back(index):
        value = call()
        if inspect.isawaitable(value):
            value = await value
    response, tokens = encode(value)
    await run.write((index, kind, name, text, digest), response, tokens, started)
    return value


def step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Journal a non-deterministic value inside a run (the time, a new id, an HTTP GET):
    the first run calls ``fn(*args)`` and records what it returned; a resumed run gets the
    recorded value back without calling it. The value must have a JSON form, and a
    resumed run receives it as JSON (a tuple comes back as a list). Outside a run it only
    calls ``fn``. In a run on an `AsyncRuntime`, ``await dar.step(...)``."""
    request = {"step": name, "args": list(args)}
    run = running()
    if run is not None and run.is_async:
        return ajournaled("step", name, request, lambda: fn(*args), _value(name), _same)
    return journaled("step", name, request, lambda: fn(*args), _value(name), _same)


def _value(name: str) -> Encode:
    def encode(value: Any) -> tuple[Any, int]:
        try:
            canonical_json(value)
        except CanonicalizationError as exc:
            raise TypeError(f"dar.step({name!r}): the value has no JSON form: {exc}") from exc
        return value, 0

    return encode


def _same(value: Any) -> Any:
    return value


def tool_request(name: str, arguments: Any) -> dict[str, Any]:
    """A tool call's request as the journal compares it: the name and the canonical input
    (the text as given when it is not JSON: the runtime refuses it the same way)."""
    try:
        return {"tool": name, "input": canonical_input(arguments).decode("utf-8")}
    except Exception:
        return {"tool": name, "raw": repr(arguments)[:10_000]}


def shown_request(name: str, arguments: Any, redactor: Redactor, salt: str) -> dict[str, Any]:
    """A tool call's request as its journal row keeps it: `tool_request` with the tool's
    personal fields as salted hashes, as every other row has them (withheld whole when
    the input cannot be read)."""
    try:
        redacted, _removed = redactor.apply(json.loads(canonical_input(arguments)), salt)
        return {"tool": name, "input": canonical_json(redacted).decode("utf-8")}
    except Exception:
        return {"tool": name, "input": "withheld: the input could not be redacted"}


def result_response(result: Result) -> dict[str, Any]:
    """A tool call's `Result` as the journal records it."""
    return {
        "status": result.status.value,
        "output_json": result.output_json,
        "reason": result.reason,
        "rule": result.rule,
        "error": result.error,
        "event_id": result.event_id,
        "key": result.key,
        "input_hash": result.input_hash,
        "retryable": result.retryable,
        "approval_id": result.approval_id,
    }


def result_from(response: dict[str, Any], load: Callable[[Any], Any] | None) -> Result:
    """The `Result` a journaled tool call answered with, rebuilt (its output through the
    tool's return type, as a cached answer is)."""
    text = response.get("output_json")
    output = None if text is None else json.loads(text)
    if output is not None and load is not None:
        output = load(output)
    return Result(
        Status(response["status"]),
        output=output,
        output_json=text,
        reason=response.get("reason"),
        rule=response.get("rule"),
        error=response.get("error"),
        event_id=response.get("event_id"),
        key=response.get("key"),
        input_hash=response.get("input_hash"),
        retryable=bool(response.get("retryable")),
        approval_id=response.get("approval_id"),
        extra={"journaled": True},
    )


def journaled_stream(
    kind: str,
    name: str,
    request: Any,
    open_stream: Callable[[], Iterable[Any]],
    encode: Callable[[Any], Any],
    decode: Decode,
    tokens: Callable[[list[Any]], int] = lambda chunks: 0,
) -> Iterator[Any]:
    """A streamed response, journaled: inside a run, the chunks are passed on as they
    arrive and recorded (``encode`` each) once the stream ends; a resumed run gets the
    recorded chunks (``decode`` each) without asking again. A stream cut short (a crash,
    or the caller stopping early) records nothing, so a resume asks again."""
    run = running()
    if run is None:
        yield from open_stream()
        return
    if run.is_async:
        raise TypeError(f"{kind} {name}: a blocking stream inside an AsyncRuntime run")
    index, text, digest, recorded = run.journal.next(kind, name, request)
    if recorded is not None:
        for chunk in recorded.response:
            yield decode(chunk)
        return
    started = time.perf_counter()
    chunks = []
    for chunk in open_stream():
        chunks.append(chunk)
        yield chunk
    response = [encode(c) for c in chunks]
    run.write((index, kind, name, text, digest), response, tokens(chunks), started)


async def ajournaled_stream(
    kind: str,
    name: str,
    request: Any,
    open_stream: Callable[[], Any],
    encode: Callable[[Any], Any],
    decode: Decode,
    tokens: Callable[[list[Any]], int] = lambda chunks: 0,
) -> AsyncIterator[Any]:
    """`journaled_stream` on an `AsyncRuntime`: ``open_stream()`` returns an async iterable
    (or an awaitable of one)."""
    run = running()
    if run is None:
        async for chunk in await _opened(open_stream):
            yield chunk
        return
    if not run.is_async:
        raise TypeError(f"{kind} {name}: an async stream inside a blocking Runtime run")
    index, text, digest, recorded = run.journal.next(kind, name, request)
    if recorded is not None:
        for chunk in recorded.response:
            yield decode(chunk)
        return
    started = time.perf_counter()
    stream = await _opened(open_stream)
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        yield chunk
    response = [encode(c) for c in chunks]
    await run.write((index, kind, name, text, digest), response, tokens(chunks), started)


async def _opened(open_stream: Callable[[], Any]) -> Any:
    stream = open_stream()
    return await stream if inspect.isawaitable(stream) else stream
