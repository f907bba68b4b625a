"""OpenTelemetry: one span per call, named and described as the GenAI conventions for tool
execution ask, with the ``dar.*`` attributes and the chain hash of the call's outcome row,
nested under the caller's span; exported by the real SDK to its in-memory exporter."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessage
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import dar
from dar import AsyncRuntime, Effect, NeedsApproval, Runtime, rule, tool
from dar.errors import ConfigurationError
from dar.integrations import openai as dar_openai
from dar.integrations.otel import instrument
from tests.support.calls import MakeRuntime

PHONE = "+51951234567"


@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"refund:{i['order_id']}")
def refund(order_id: str, amount: int, phone: str = PHONE) -> dict[str, Any]:
    """Refund an order to the customer's card."""
    if amount < 0:
        raise ValueError("a negative refund")
    return {"order_id": order_id, "refunded": amount}


@rule(applies_to="refund")
def refund_limit(inp: dict[str, Any], ctx: Any) -> bool | str | NeedsApproval:
    if inp["amount"] > 1000:
        return False
    return NeedsApproval("a large refund") if inp["amount"] > 100 else True


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def traced(make_runtime: MakeRuntime, provider: TracerProvider, *tools: Any) -> tuple[Runtime, Any]:
    rt = make_runtime(tools=tools or [refund], rules=[refund_limit])
    # The async kind drives an AsyncRuntime (`.art`) from a blocking facade: instrument it.
    return rt, instrument(getattr(rt, "art", rt), tracer_provider=provider)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_every_answer_is_one_span_whose_chain_hash_is_its_rows(
    make_runtime: MakeRuntime, exported: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = exported
    rt, _ = traced(make_runtime, provider)
    with dar.session("s-refunds"):
        results = [
            rt.call("refund", {"order_id": "A", "amount": 5}),
            rt.call("refund", {"order_id": "A", "amount": 5}),
            rt.call("refund", {"order_id": "B", "amount": 5000}),
            rt.call("refund", {"order_id": "C", "amount": 500}),
            rt.call("refund", {"order_id": "D", "amount": -1}),
        ]
    assert [r.status.value for r in results] == [
        "executed",
        "cached",
        "rejected",
        "awaiting_approval",
        "failed",
    ]
    spans = exporter.get_finished_spans()
    rows = {e.event_id: e for e in rt.events(correlation_id="s-refunds")}
    assert [s.name for s in spans] == ["execute_tool refund"] * 5
    for span, result in zip(spans, results, strict=True):
        seen = attrs(span)
        row = rows[str(result.event_id)]
        assert span.kind is SpanKind.INTERNAL
        assert seen["dar.status"] == result.status.value
        assert seen["dar.event_id"] == result.event_id
        assert seen["dar.chain_hash"] == row.row_hash is not None
        assert seen["gen_ai.tool.call.id"] == seen["dar.call_id"] == row.call_id  # no model
        assert seen["gen_ai.conversation.id"] == seen["dar.correlation_id"] == "s-refunds"
        assert seen["dar.idempotency_key"] == result.key
        assert PHONE not in str(seen)  # no input or output value, ever


def test_executed_and_cached_calls_are_described_by_the_genai_conventions(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with Runtime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as rt:
        instrument(rt, tracer_provider=provider)
        rt.call("refund", {"order_id": "A", "amount": 5})
        rt.call("refund", {"order_id": "A", "amount": 5})
    executed, cached = (attrs(s) for s in exporter.get_finished_spans())
    assert {k: v for k, v in executed.items() if k.startswith("gen_ai.") and "id" not in k} == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "refund",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Refund an order to the customer's card.",
    }
    assert (executed["dar.effect"], executed["dar.attempt"], executed["dar.cached"]) == (
        "mutate-external",
        1,
        False,
    )
    assert (cached["dar.status"], cached["dar.cached"]) == ("cached", True)
    assert cached["dar.idempotency_key"] == executed["dar.idempotency_key"]
    assert cached["gen_ai.tool.call.id"] != executed["gen_ai.tool.call.id"]  # two calls


def test_a_refusal_or_a_wait_for_approval_is_not_an_error_but_says_why(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with Runtime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as rt:
        instrument(rt, tracer_provider=provider)
        refused = rt.call("refund", {"order_id": "B", "amount": 5000})
        waiting = rt.call("refund", {"order_id": "C", "amount": 500})
        unknown = rt.call("refund_everything", {})
    spans = exporter.get_finished_spans()
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET] * 3
    assert all("error.type" not in attrs(s) for s in spans)
    rejected, awaiting, nobody = (attrs(s) for s in spans)
    assert (rejected["dar.rule"], rejected["dar.reason"]) == ("refund_limit", refused.reason)
    assert awaiting["dar.approval_id"] == waiting.approval_id is not None
    assert awaiting["dar.reason"] == waiting.reason
    assert spans[2].name == "execute_tool refund_everything"
    assert (nobody["dar.status"], nobody["dar.effect"]) == ("rejected", "unknown")
    assert nobody["dar.reason"] == unknown.reason


def test_a_failed_call_is_an_error_typed_by_its_exception(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with Runtime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as rt:
        instrument(rt, tracer_provider=provider)
        rt.call("refund", {"order_id": "D", "amount": -1})
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "negative" not in str(span.status.description)  # the message stays in the log
    assert (attrs(span)["error.type"], attrs(span)["dar.status"]) == ("ValueError", "failed")


def test_the_call_nests_under_the_callers_span_and_what_its_handler_does_under_it(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    tracer = provider.get_tracer("test")

    @tool(effect=Effect.READ)
    def order_total(order_id: str) -> int:
        with tracer.start_as_current_span("GET /orders"):
            return 5

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def refund_whole_order(order_id: str) -> dict[str, Any]:
        total = rt.call("order_total", {"order_id": order_id})  # a nested call
        return {"refunded": total.output}

    with Runtime("sqlite://:memory:", tools=[order_total, refund_whole_order]) as rt:
        instrument(rt, tracer_provider=provider)
        with tracer.start_as_current_span("agent turn"):
            rt.call("refund_whole_order", {"order_id": "A"})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert len(spans) == 4
    outer, inner = spans["execute_tool refund_whole_order"], spans["execute_tool order_total"]

    def parent(span: ReadableSpan) -> int | None:
        return None if span.parent is None else span.parent.span_id

    assert parent(outer) == spans["agent turn"].context.span_id
    assert parent(inner) == outer.context.span_id
    assert parent(spans["GET /orders"]) == inner.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1


def test_async_calls_side_by_side_each_nest_under_the_callers_span(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    tracer = provider.get_tracer("test")

    @tool(effect=Effect.READ)
    async def order_total(order_id: str) -> int:
        with tracer.start_as_current_span(f"GET /orders/{order_id}"):
            await asyncio.sleep(0.01)  # the other call runs meanwhile
            return 5

    async def turn() -> None:
        async with AsyncRuntime("sqlite://:memory:", tools=[order_total]) as rt:
            instrument(rt, tracer_provider=provider)
            with tracer.start_as_current_span("agent turn"):
                await asyncio.gather(
                    rt.call("order_total", {"order_id": "A"}),
                    rt.call("order_total", {"order_id": "B"}),
                )

    asyncio.run(turn())
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    turn_span = next(s for s in spans if s.name == "agent turn")
    for http in (s for s in spans if s.name.startswith("GET")):
        assert http.parent is not None
        call = by_id[http.parent.span_id]
        assert call.name == "execute_tool order_total"
        assert call.parent is not None and call.parent.span_id == turn_span.context.span_id
    assert len(spans) == 5


def turn(*calls: tuple[str, str, dict[str, Any]]) -> ChatCompletionMessage:
    """An assistant message of the Chat Completions API with these (id, tool, arguments)."""
    return ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, n, a in calls
            ],
        }
    )


def test_a_call_an_integration_makes_carries_the_models_id_for_it(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    asked = turn(
        ("call_a", "refund", {"order_id": "A", "amount": 5}),
        ("call_b", "refund", {"order_id": "B", "amount": 6}),
    )
    with Runtime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as rt:
        instrument(rt, tracer_provider=provider)
        dar_openai.run_tool_calls(rt, asked, correlation_id="s-ids")
        rt.call("refund", {"order_id": "C", "amount": 7})  # not from a model: the log's id

    async def concurrently() -> None:
        async with AsyncRuntime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as art:
            instrument(art, tracer_provider=provider)
            await dar_openai.arun_tool_calls(art, asked, correlation_id="s-ids")

    asyncio.run(concurrently())
    ids = [
        (attrs(s)["gen_ai.tool.call.id"], attrs(s)["dar.call_id"])
        for s in exporter.get_finished_spans()
    ]
    assert [model for model, _ in ids[:2]] == ["call_a", "call_b"]
    assert ids[2][0] == ids[2][1]  # the third call had no model id
    assert sorted(model for model, _ in ids[3:]) == ["call_a", "call_b"]  # each task its own


def test_instrumenting_again_replaces_and_uninstrument_undoes(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with Runtime("sqlite://:memory:", tools=[refund], rules=[refund_limit]) as rt:
        instrument(rt, tracer_provider=provider)
        again = instrument(rt, tracer_provider=provider)
        rt.call("refund", {"order_id": "A", "amount": 5})
        assert len(exporter.get_finished_spans()) == 1  # one span per call, never two
        again.uninstrument()
        rt.call("refund", {"order_id": "A", "amount": 5})
        assert len(exporter.get_finished_spans()) == 1
        assert rt.observer is None


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("opentelemetry", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, "dar.integrations.otel")
    with pytest.raises(ConfigurationError, match=r"\[otel\]"):
        importlib.import_module("dar.integrations.otel")
