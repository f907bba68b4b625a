"""The model's tool call, end to end: registered tools, validation against the handler's
signature, dispatch by name from JSON text, outputs typed back, schemas, answers the model
can read, session scope. Every test runs on SQLite (memory and file) and Postgres, sync and
async."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import BaseModel

import dar
from dar import ConfigurationError, Effect, Runtime, Status, tool
from tests.support.calls import MakeRuntime
from tests.support.typed_tools import (
    ORDER,
    Receipt,
    Shipment,
    add,
    dispatch_order,
    get_order,
    runs,
)


def started_rows(rt: Runtime) -> list[dar.Event]:
    return rt.events(status="started")


# --- dispatch by name ---------------------------------------------------------------------------


def test_call_by_name_from_json_text_or_dict_is_one_key(rt: Runtime) -> None:
    first = rt.call("dispatch_order", json.dumps(ORDER), correlation_id="conv-1")
    assert first.status == Status.EXECUTED
    assert isinstance(first.output, Shipment)
    reordered = json.dumps(dict(reversed(list(ORDER.items()))))
    again = rt.call("dispatch_order", reordered, correlation_id="conv-1")
    as_dict = rt.call("dispatch_order", ORDER, correlation_id="conv-1")
    assert again.status == as_dict.status == Status.CACHED
    assert again.key == as_dict.key == first.key
    assert runs["dispatch_order"] == 1
    # `cached` returns the same Python type as `executed`, and the model reads the same text.
    assert again.output == first.output and isinstance(again.output, Shipment)
    assert first.for_model() == again.for_model()
    assert json.loads(first.for_model().text)["eta"] == "2026-12-01"
    assert not first.for_model().is_error


def test_unknown_tool_is_refused_logged_and_lists_the_known_ones(rt: Runtime) -> None:
    res = rt.call("dispatch_ordr", '{"order_id": "ORD-1"}', correlation_id="conv-1")
    assert res.status == Status.REJECTED
    assert "unknown tool 'dispatch_ordr'" in (res.reason or "")
    assert "dispatch_order" in (res.reason or "") and "get_order" in (res.reason or "")
    [ev] = rt.events(correlation_id="conv-1")
    assert ev.tool_name == "dispatch_ordr" and ev.status == "rejected"
    assert ev.effect == "unknown"
    assert "ORD-1" in json.dumps(ev.input)  # a safe preview of what was sent
    reply = res.for_model()
    assert reply.is_error and "refused again" in reply.text


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"order_id": "ORD-1",', "invalid JSON"),
        ('{"a": 1, "a": 2}', 'duplicate member name "a"'),
        ('{"a": NaN}', "at $.a"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('"ORD-1"', "must be a JSON object, not a string"),
        ("3", "must be a JSON object, not a number"),
    ],
)
def test_arguments_that_are_not_a_json_object_are_refused_with_a_path(
    rt: Runtime, arguments: str, expected: str
) -> None:
    res = rt.call("add", arguments, correlation_id="conv-2")
    assert res.status == Status.REJECTED
    assert expected in (res.reason or "")
    [ev] = rt.events(correlation_id="conv-2")
    assert ev.status == "rejected" and ev.tool_name == "add"
    assert runs["add"] == 0


def test_blank_or_missing_arguments_mean_no_arguments(make_runtime: MakeRuntime) -> None:
    @tool(effect=Effect.READ)
    def ping() -> str:
        return "pong"

    rt = make_runtime(tools=[ping])
    arguments: str | dict[str, Any] | None
    for arguments in ("", "  ", None, "{}", {}):
        assert rt.call("ping", arguments).output == "pong"


# --- validation ---------------------------------------------------------------------------------


def test_wrong_type_is_refused_before_rules_and_claim(rt: Runtime) -> None:
    res = rt.call("add", '{"a": "1", "b": "2"}', correlation_id="conv-3")
    assert res.status == Status.REJECTED
    assert res.reason == (
        "invalid arguments: $.a: expected integer, got string; $.b: expected integer, got string"
    )
    assert runs["add"] == 0
    assert started_rows(rt) == []  # no claim was taken
    assert rt.call("add", '{"a": 1, "b": 2}').output == 3


def test_missing_extra_and_nested_errors_name_every_path(rt: Runtime) -> None:
    bad = {
        "order_id": "ORD-1",
        "courier": "dhl",
        "items": [{"sku": "A", "qty": 0}, {"sku": 5, "qty": 1}],
        "note": "x",
    }
    res = rt.call("dispatch_order", bad)
    reason = res.reason or ""
    assert res.status == Status.REJECTED and res.rule is None
    for part in (
        "$.courier: ",
        "$.zone: required, missing",
        "$.items[0].qty: input should be greater than 0",
        "$.items[1].sku: expected string, got integer",
        "$.note: unexpected argument",
    ):
        assert part in reason, (part, reason)
    assert runs["dispatch_order"] == 0
    assert started_rows(rt) == []


def test_strict_means_json_types_but_iso_dates_pass(rt: Runtime) -> None:
    assert rt.call("get_order", {"order_id": "A", "when": "2026-11-28"}).status == Status.EXECUTED
    res = rt.call("get_order", {"order_id": "A", "when": "28/11/2026"})
    assert res.status == Status.REJECTED and "$.when" in (res.reason or "")
    assert rt.call("add", {"a": 1.5, "b": 1}).status == Status.REJECTED


def test_coerce_opts_into_lax_mode_and_keys_the_coerced_input(rt: Runtime) -> None:
    first = rt.call("reserve", '{"sku": "A", "qty": "3"}')
    second = rt.call("reserve", '{"sku": "A", "qty": 3}')
    assert first.status == Status.EXECUTED and first.output == {"sku": "A", "qty": 3}
    assert second.status == Status.CACHED and second.key == first.key
    assert first.input_hash == dar.input_hash({"sku": "A", "qty": 3})
    assert runs["reserve"] == 1
    [ev] = rt.events(status="started")
    assert ev.input == {"sku": "A", "qty": 3}  # the log holds what ran


def test_execute_validates_too() -> None:
    with Runtime("sqlite://:memory:") as rt:
        res = rt.execute(add, {"a": "1", "b": 2})
        assert res.status == Status.REJECTED and "$.a" in (res.reason or "")


# --- outputs ------------------------------------------------------------------------------------


def test_outputs_are_converted_and_typed_back_on_a_hit(rt: Runtime) -> None:
    first = rt.call("get_order", {"order_id": "A"})
    assert isinstance(first.output, Receipt)
    assert json.loads(first.output_json or "") == {"id": "A", "at": "2026-11-28T12:00:00Z"}

    @tool(effect=Effect.MUTATE_LOCAL)
    def stamp() -> Receipt:
        return Receipt(id="r", at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))

    rt.add_tool(stamp)
    one, two = rt.call("stamp"), rt.call("stamp")
    assert two.status == Status.CACHED and two.output == one.output
    assert isinstance(two.output, Receipt)


class Opaque:
    pass


def test_a_return_type_that_cannot_be_recorded_is_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="cannot be recorded"):

        @tool(effect=Effect.MUTATE_LOCAL)
        def bad() -> Opaque:
            return Opaque()

    with pytest.raises(ConfigurationError, match="arguments cannot be validated"):

        @tool(effect=Effect.MUTATE_LOCAL)
        def worse(thing: Opaque) -> None: ...


def test_types_defined_in_the_enclosing_function_resolve() -> None:
    class Local(BaseModel):
        n: int

    @tool(effect=Effect.MUTATE_LOCAL)
    def uses_local(item: Local) -> Local:
        return item

    with Runtime("sqlite://:memory:", tools=[uses_local]) as rt:
        first, again = (
            rt.call("uses_local", '{"item": {"n": 1}}'),
            rt.call("uses_local", {"item": {"n": 1}}),
        )
        assert first.output == again.output == Local(n=1)


# --- schemas ------------------------------------------------------------------------------------


def test_input_schema_comes_from_signature_and_docstring() -> None:
    schema = dispatch_order.input_schema()
    assert schema["description"] == "Dispatch an order with a courier."
    props = schema["properties"]
    assert props["order_id"] == {
        "type": "string",
        "description": "the shop's order number, like ORD-1",
    }
    assert schema["required"] == ["order_id", "courier", "zone", "items"]
    assert schema["additionalProperties"] is False
    assert "$defs" in schema and "Item" in schema["$defs"]


@pytest.mark.parametrize("style", ["google", "numpy", "sphinx"])
def test_docstring_styles(style: str) -> None:
    docs = {
        "google": "Charge a card.\n\nArgs:\n    amount: in cents\n",
        "numpy": "Charge a card.\n\nParameters\n----------\namount : int\n    in cents\n",
        "sphinx": "Charge a card.\n\n:param amount: in cents\n",
    }

    def charge(amount: int) -> None: ...

    charge.__doc__ = docs[style]
    schema = tool(effect=Effect.MUTATE_EXTERNAL)(charge).input_schema()
    assert schema["description"] == "Charge a card."
    assert schema["properties"]["amount"]["description"] == "in cents"


def test_tool_schemas_in_every_dialect(rt: Runtime) -> None:
    chat = {t["function"]["name"]: t for t in rt.tool_schemas("openai-chat")}
    assert chat["add"]["type"] == "function"
    assert chat["add"]["function"]["strict"] is True  # every property required, closed
    assert chat["get_order"]["function"]["strict"] is False  # `when` has a default
    assert chat["dispatch_order"]["function"]["description"] == "Dispatch an order with a courier."
    responses = {t["name"]: t for t in rt.tool_schemas("openai-responses")}
    assert responses["add"]["parameters"] == chat["add"]["function"]["parameters"]
    anthropic = {t["name"]: t for t in rt.tool_schemas("anthropic")}
    assert set(anthropic["add"]) == {"name", "description", "input_schema"}
    [gemini] = rt.tool_schemas("gemini")
    names = [d["name"] for d in gemini["function_declarations"]]
    assert names == [t.name for t in rt.tools]
    mcp = {t["name"]: t for t in rt.tool_schemas("mcp")}
    assert mcp["get_order"]["annotations"]["readOnlyHint"] is True
    assert mcp["dispatch_order"]["annotations"]["openWorldHint"] is True
    with pytest.raises(ConfigurationError, match="unknown tool dialect"):
        rt.tool_schemas("cohere")


# --- what the model reads -----------------------------------------------------------------------


def test_for_model_wording_per_status(rt: Runtime) -> None:
    refused = rt.call("dispatch_order", {**ORDER, "zone": "yunguyo"})
    reply = refused.for_model()
    assert reply.is_error
    assert "covers_zone" in reply.text and "shalom does not deliver to yunguyo" in reply.text
    assert "refused again" in reply.text

    conflict = [
        rt.call("add", {"a": 1, "b": 2}, key="k"),
        rt.call("add", {"a": 1, "b": 3}, key="k"),
    ]
    assert conflict[1].status == Status.CONFLICT
    assert "$.b differ" in conflict[1].for_model().text
    assert conflict[1].input_hash is not None  # (narrowed for the type checker)
    assert conflict[1].input_hash not in conflict[1].for_model().text


def test_failed_says_whether_a_retry_runs(make_runtime: MakeRuntime) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def flaky(n: int) -> int:
        raise RuntimeError("courier API down")

    @tool(effect=Effect.MUTATE_LOCAL, keep_failures=True)
    def sticky(n: int) -> int:
        raise RuntimeError("card declined")

    rt = make_runtime(tools=[flaky, sticky])
    text = rt.call("flaky", {"n": 1}).for_model().text
    assert "courier API down" in text and "will run the tool again" in text
    rt.call("sticky", {"n": 1})
    again = rt.call("sticky", {"n": 1})
    assert again.status == Status.FAILED
    assert "returns this same failure" in again.for_model().text


# --- session scope ------------------------------------------------------------------------------


def test_session_scope_and_the_session_context(rt: Runtime) -> None:
    msg = {"to": "+51951234567", "text": "Your order shipped", "brand": "Alpaca Textiles"}
    with dar.session("week-1"):
        assert rt.call("send_whatsapp", msg).status == Status.EXECUTED
        assert rt.call("send_whatsapp", msg).status == Status.CACHED
    with dar.session("week-2"):
        assert rt.call("send_whatsapp", msg).status == Status.EXECUTED
    assert runs["send_whatsapp"] == 2
    assert {e.correlation_id for e in rt.events(tool="send_whatsapp")} == {"week-1", "week-2"}
    # An explicit correlation id wins over the session around the call.
    with dar.session("week-3"):
        rt.call("add", {"a": 1, "b": 1}, correlation_id="explicit")
    assert rt.events(correlation_id="explicit")


def test_in_memory_runtime_warns_once() -> None:
    rt = Runtime(tools=[add, get_order])
    with pytest.warns(UserWarning, match="in memory") as seen:
        rt.call("get_order", {"order_id": "A"})  # a read: no warning yet
        rt.call("add", {"a": 1, "b": 2})
        rt.call("add", {"a": 2, "b": 2})
    assert len(seen) == 1
    assert seen[0].filename == __file__  # it points at the caller, not into dar
    rt.close()


# --- coercion -----------------------------------------------------------------------------------


def test_a_coerced_value_with_no_json_form_is_refused_not_raised() -> None:
    @tool(effect=Effect.MUTATE_LOCAL, coerce=True)
    def count(n: int) -> int:
        return n

    with Runtime("sqlite://:memory:", tools=[count]) as rt:
        res = rt.call("count", {"n": "12345678901234567890"})  # lax: an int beyond 2**53
        assert res.status == Status.REJECTED and "$.n" in (res.reason or "")
