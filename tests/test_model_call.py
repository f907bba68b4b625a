"""The model's tool call, end to end: registered tools, validation against the handler's
signature, dispatch by name from JSON text, answers the model can read, cancellation,
session scope. Every test runs on SQLite (memory and file) and Postgres, sync and async."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

import dar
from dar import Allow, ConfigurationError, Deny, Effect, Runtime, Status, rule, tool

MakeRuntime = Callable[..., Runtime]


class Courier(str, enum.Enum):
    SHALOM = "shalom"
    OLVA = "olva"


class Item(BaseModel):
    sku: str
    qty: Annotated[int, Field(gt=0)]


class Shipment(BaseModel):
    order_id: str
    courier: Courier
    eta: dt.date


@dataclasses.dataclass
class Receipt:
    id: str
    at: dt.datetime


runs: Counter[str] = Counter()


@tool(effect=Effect.MUTATE_EXTERNAL)
def dispatch_order(order_id: str, courier: Courier, zone: str, items: list[Item]) -> Shipment:
    """Dispatch an order with a courier.

    Args:
        order_id: the shop's order number, like ORD-1
        courier: who carries it
        zone: the delivery town
        items: what is in the parcel
    """
    runs["dispatch_order"] += 1
    return Shipment(order_id=order_id, courier=courier, eta=dt.date(2026, 12, 1))


@tool(effect=Effect.MUTATE_LOCAL)
def add(a: int, b: int) -> int:
    runs["add"] += 1
    return a + b


@tool(effect=Effect.MUTATE_LOCAL, coerce=True)
def reserve(sku: str, qty: int) -> dict[str, Any]:
    runs["reserve"] += 1
    return {"sku": sku, "qty": qty}


@tool(effect=Effect.READ)
def get_order(order_id: str, when: dt.date | None = None) -> Receipt:
    runs["get_order"] += 1
    return Receipt(id=order_id, at=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))


@tool(effect=Effect.MUTATE_EXTERNAL, scope="session")
def send_whatsapp(to: str, text: str, brand: Literal["Alpaca Textiles"]) -> dict[str, str]:
    runs["send_whatsapp"] += 1
    return {"sent": text}


@rule(applies_to="dispatch_order")
def covers_zone(inp: dict[str, Any], ctx: Any) -> Allow | Deny:
    if inp["zone"] != "puno":
        return Deny(f"{inp['courier']} does not deliver to {inp['zone']}")
    return Allow()


TOOLS = [dispatch_order, add, reserve, get_order, send_whatsapp]
ORDER = {
    "order_id": "ORD-1",
    "courier": "shalom",
    "zone": "puno",
    "items": [{"sku": "A", "qty": 2}],
}


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime(tools=TOOLS, rules=[covers_zone])


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


# --- registration -------------------------------------------------------------------------------


@tool(effect=Effect.IRREVERSIBLE)
def confirm_payment(order_id: str) -> str:
    return order_id


def test_irreversible_tool_without_a_rule_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="irreversible but no rule"):
        Runtime("sqlite://:memory:", tools=[confirm_payment])
    guard = rule(applies_to="confirm_payment", name="guard")(lambda i, c: True)
    rt = Runtime("sqlite://:memory:", rules=[guard])
    rt.add_tool(confirm_payment)
    with pytest.raises(ConfigurationError, match="irreversible but no rule"):
        rt.remove_rule("guard")
    assert [r.name for r in rt.rules] == ["guard"]  # refused: the rule stays
    with pytest.raises(ConfigurationError, match="already registered"):
        rt.add_tool(confirm_payment)
    assert [t.name for t in rt.tools] == ["confirm_payment"]
    rt.close()


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


def test_redacted_values_never_reach_the_model(make_runtime: MakeRuntime) -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL, redact=["phone"])
    def notify(phone: str) -> dict[str, str]:
        raise RuntimeError(f"number {phone} is not on WhatsApp")

    rt = make_runtime(tools=[notify])
    reply = rt.call("notify", {"phone": "+51951234567"}).for_model()
    assert reply.is_error and "+51951234567" not in reply.text


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


# --- cancellation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "after"),
    [(Effect.MUTATE_LOCAL, Status.EXECUTED), (Effect.MUTATE_EXTERNAL, Status.INDETERMINATE)],
)
def test_asyncio_cancellation_is_logged_at_once(
    store_url: str, effect: Effect, after: Status
) -> None:
    started = asyncio.Event()

    @tool(name="slow", effect=effect, lease=3600)
    async def slow(n: int) -> int:
        started.set()
        await asyncio.sleep(0 if runs["slow"] else 30)
        runs["slow"] += 1
        return n

    async def scenario() -> None:
        async with dar.AsyncRuntime(store_url, tools=[slow], wait=0.2) as art:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(art.call("slow", {"n": 1}, correlation_id="c"), 0.2)
            assert started.is_set()
            [row] = await art.events(status="cancelled")
            assert row.correlation_id == "c" and "CancelledError" in (row.rejection_reason or "")
            runs["slow"] = 1  # the next run returns at once
            # Not `in_progress` for the whole lease: released, or indeterminate now.
            assert (await art.call("slow", {"n": 1})).status == after

    asyncio.run(scenario())


def test_keyboard_interrupt_in_a_handler_is_logged_then_raised(store_url: str) -> None:
    @tool(effect=Effect.MUTATE_LOCAL)
    def interrupted(n: int) -> int:
        if not runs["interrupted"]:
            runs["interrupted"] += 1
            raise KeyboardInterrupt
        return n

    with Runtime(store_url, tools=[interrupted]) as rt:
        with pytest.raises(KeyboardInterrupt):
            rt.call("interrupted", {"n": 1})
        assert [e.status for e in rt.events()] == ["started", "cancelled"]
        assert rt.call("interrupted", {"n": 1}).status == Status.EXECUTED


# --- one hash, one key, however the arguments arrive --------------------------------------------

texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | texts,
    containers,
    max_leaves=8,
)


@tool(effect=Effect.MUTATE_LOCAL)
def anything(**arguments: Any) -> int:
    return len(arguments)


@settings(max_examples=100)
@given(st.dictionaries(texts.filter(bool), json_values, max_size=5), st.randoms())
def test_every_way_arguments_arrive_is_one_hash_and_one_key(
    arguments: dict[str, Any], rnd: Any
) -> None:
    shuffled = list(arguments.items())
    rnd.shuffle(shuffled)
    forms: list[Any] = [
        arguments,  # Anthropic's tool_use.input, Gemini's function_call.args
        json.dumps(arguments),  # OpenAI's arguments string
        json.dumps(dict(shuffled), ensure_ascii=False, indent=1),  # another member order
        json.dumps(dict(shuffled), separators=(",", ":")).encode("utf-8"),
    ]
    with Runtime("sqlite://:memory:", tools=[anything]) as rt:
        results = [rt.call("anything", form) for form in forms]
    assert [r.status for r in results] == [Status.EXECUTED] + [Status.CACHED] * 3
    assert len({r.key for r in results}) == 1
    assert {r.input_hash for r in results} == {dar.input_hash(arguments)}
