"""OpenTelemetry spans for every call, linked to the tamper-evident record.

The agent SDKs and Logfire already trace model calls and tools; ``instrument(rt)`` makes
each call of a runtime one span in the same trace, named and described by the
OpenTelemetry GenAI conventions for tool execution (``execute_tool NAME``,
``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ...), plus ``dar.*`` attributes: how the
runtime answered, under which key, which rule refused and why, which approval is awaited,
and the hash-chain link (``dar.chain_hash``) of the call's outcome row, which `dar verify`
checks. The span is current while the handler runs, so what the handler traces (an HTTP
client, a nested call) nests under it, and it nests under the caller's current span.

No input or output value is ever an attribute: they may be personal data, which the log
keeps only redacted. A refusal is not an error of the runtime: only a call whose effect
failed or has an unknown outcome (``failed``, ``indeterminate``, ``cancelled``) has the
``ERROR`` status and an ``error.type``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dar import __version__
from dar.context import model_tool_call_id
from dar.core.ops import LogFilter, Ops, ReadLog
from dar.effects import Status
from dar.integrations import require
from dar.records import Event, Result
from dar.runtime.base import CallObserver, RuntimeBase

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

_trace = require("opentelemetry.trace", "otel", "opentelemetry-api")

#: The statuses whose effect failed or may have half happened: the span's ``ERROR``.
ERRORS = frozenset({Status.FAILED, Status.INDETERMINATE, Status.CANCELLED})


class Instrumentation:
    """What `instrument` did to one runtime; ``uninstrument()`` undoes it."""

    def __init__(self, rt: RuntimeBase, tracer: Tracer, previous: CallObserver | None) -> None:
        self.rt, self.tracer, self.previous = rt, tracer, previous

    def uninstrument(self) -> None:
        """Stop tracing the runtime's calls (a no-op once another instrument replaced this
        one)."""
        if self.rt.observer is self:
            self.rt.observer = self.previous

    @contextmanager
    def __call__(self, name: str, decision: Ops[Result]) -> Iterator[Ops[Result]]:
        """The call's span (a `CallObserver`), current in the caller's context while its
        decision is driven."""
        with self.tracer.start_as_current_span(
            f"execute_tool {name}",
            kind=_trace.SpanKind.INTERNAL,
            attributes=self._tool_attributes(name),
            record_exception=False,  # its message may quote the input
            set_status_on_exception=False,
        ) as span:
            try:
                # The model's id of the call when an integration made it (the id the SDK's
                # own spans and messages carry), else the log's.
                asked = model_tool_call_id.get()
                yield _described(span, decision, asked) if span.is_recording() else decision
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(_trace.StatusCode.ERROR)
                raise

    def _tool_attributes(self, name: str) -> dict[str, str]:
        found = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
        }
        tool = next((t for t in self.rt.tools if t.name == name), None)
        if tool is not None:
            found["dar.effect"] = tool.effect.value
            if tool.summary:
                found["gen_ai.tool.description"] = tool.summary
        return found


def instrument(rt: RuntimeBase, tracer_provider: TracerProvider | None = None) -> Instrumentation:
    """Trace every call of ``rt`` (a `Runtime` or an `AsyncRuntime`) as one span, with the
    ``tracer_provider`` given or OpenTelemetry's global one. Instrumenting again replaces
    the earlier instrument (one span per call, never two); ``.uninstrument()`` undoes it.

    Reading the chain hash of the outcome row costs one indexed read per call, after the
    outcome is written, and only while the span is recorded (sampled)."""
    previous = rt.observer
    if isinstance(previous, Instrumentation):
        previous = previous.previous
    tracer = _trace.get_tracer("dar", __version__, tracer_provider=tracer_provider)
    done = Instrumentation(rt, tracer, previous)
    rt.observer = done
    return done


def _described(span: Span, decision: Ops[Result], asked: str | None) -> Ops[Result]:
    """Drive the decision, then describe its answer on the span, with the chain hash of
    the row it wrote (read back: the store computes the hash as it inserts the row)."""
    result = yield from decision
    row: Event | None = None
    if result.event_id is not None:
        rows: list[Event] = yield ReadLog(LogFilter(event_id=result.event_id))
        row = rows[0] if rows else None
    span.set_attributes(attributes(result, row, asked))
    if result.status in ERRORS:
        span.set_attribute("error.type", error_type(result))
        span.set_status(_trace.StatusCode.ERROR)
    return result


def attributes(
    result: Result, row: Event | None, asked: str | None = None
) -> dict[str, str | bool | int]:
    """The span attributes of one answered call (``asked``: the model's id of it): never
    an input or output value."""
    found: dict[str, str | bool | int | None] = {
        "dar.status": result.status.value,
        "dar.cached": result.status is Status.CACHED,
        "dar.event_id": result.event_id,
        "dar.idempotency_key": result.key,
        "dar.rule": result.rule,
        "dar.reason": result.reason,
        "dar.approval_id": result.approval_id,
        "dar.call_id": result.event_id,
    }
    if row is not None:
        found.update(
            {
                "dar.call_id": row.call_id or row.event_id,
                "dar.effect": row.effect,
                "dar.attempt": row.attempt,
                "dar.correlation_id": row.correlation_id,
                "gen_ai.conversation.id": row.correlation_id,
                "dar.chain_hash": row.row_hash,
            }
        )
    found["gen_ai.tool.call.id"] = asked or found["dar.call_id"]
    return {name: value for name, value in found.items() if value is not None}


def error_type(result: Result) -> str:
    """The exception's class when the error names one (``"TimeoutError: ..."``), else the
    status: a low-cardinality value, as the conventions ask."""
    head = (result.error or "").partition(":")[0]
    return head if head.isidentifier() else result.status.value
