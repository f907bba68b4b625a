"""Redaction: values a tool marks as personal reach no table, no database file and no reply
to the model, and a failing `redact=` function never loses an outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from dar import (
    Deny,
    Effect,
    RuleContext,
    Runtime,
    Status,
    rule,
    tool,
)
from tests.support.calls import MakeRuntime


def test_redacted_values_never_reach_the_model(make_runtime: MakeRuntime) -> None:
    @tool(effect=Effect.MUTATE_EXTERNAL, redact=["phone"])
    def notify(phone: str) -> dict[str, str]:
        raise RuntimeError(f"number {phone} is not on WhatsApp")

    rt = make_runtime(tools=[notify])
    reply = rt.call("notify", {"phone": "+51951234567"}).for_model()
    assert reply.is_error and "+51951234567" not in reply.text


def test_a_redact_function_that_raises_on_the_output_is_recorded(
    store_url: str,
) -> None:
    """Found by the airtight review: a `redact=` function that raises on the output makes `execute`
    raise after the handler ran, outcome never recorded."""
    ran: list[str] = []

    def redact(value: Any) -> Any:
        if isinstance(value, dict) and "receipt" in value:
            raise ValueError("cannot redact receipts")
        return {**value, "card": "x"} if isinstance(value, dict) else value

    @tool(effect=Effect.MUTATE_LOCAL, redact=redact)
    def pay(card: str) -> dict[str, str]:
        ran.append(card)
        return {"receipt": "r-1"}

    with Runtime(store_url, wait=0.5) as rt:
        first = rt.execute(pay, {"card": "4111"})
        assert first.status == Status.EXECUTED
        assert "redact" in (first.error or "")
        again = rt.execute(pay, {"card": "4111"})
        assert again.status == Status.CACHED
        assert ran == ["4111"]


CARD = 2**53 - 1  # the largest integer canonical JSON accepts


BACKUP = 4111111111111111.0  # a card number that arrives as a float


MOBILE = "+51-987-654-321"


CODE = "Ωж"  # two characters


NAME = "Muñoz-Ærø"


ALIAS = 'O\'Brien "Bob"'


SECRET = "ZEBRA-7731-SECRET"


def leaked_forms() -> dict[str, list[str]]:
    """Each raw value, and how it looks escaped (JSON, ASCII JSON, repr)."""
    return {
        "card (int)": [str(CARD)],
        "backup card (float)": ["4111111111111111"],
        "phone (also a dict key)": [MOBILE],
        "short code": [CODE],
        "name": [NAME, json.dumps(NAME)[1:-1]],
        "alias": [ALIAS, repr(ALIAS)[1:-1], json.dumps(ALIAS)[1:-1]],
        "secret (redact= function)": [SECRET],
    }


def database_text(url: str) -> bytes:
    """Every byte of a SQLite database, or every value of every Postgres table."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        return b"".join(
            Path(path + suffix).read_bytes()
            for suffix in ("", "-wal", "-journal")
            if Path(path + suffix).exists()
        )
    from dar.store import split_schema

    base, schema = split_schema(url)
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                out.append(str(k))
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value is not None:
            out.append(str(value))

    with psycopg.connect(base) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                for value in row:
                    walk(value)
                    if isinstance(value, (dict, list)):
                        out.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(out).encode()


def test_redacted_values_appear_nowhere_in_the_database(shared_url: str) -> None:
    """Found by the airtight review: redaction leaks: a redacted field used as a dict key, a big-int
    card number, a `redact=` function's output, a short value and an escaped repr still appear raw
    in the SQLite file and the Postgres tables/data files."""

    @tool(
        effect=Effect.MUTATE_EXTERNAL,
        redact=["card", "backup", "phone", "code", "name", "alias"],
        key=lambda i: f"pay:{i['name']}:{i['fail']}",
    )
    def pay(
        card: int,
        backup: float,
        phone: str,
        code: str,
        name: str,
        alias: str,
        notes: Any,
        fail: bool,
    ) -> dict[str, Any]:
        if fail:
            raise ValueError(f"declined for {json.dumps(name)} alias {alias!r} code {code}")
        return {"charged": card, "backup": backup, "note": f"code {code} ok"}

    def hide(value: Any) -> Any:
        return (
            {**value, "secret": "***"} if isinstance(value, dict) and "secret" in value else value
        )

    @tool(effect=Effect.MUTATE_EXTERNAL, redact=hide)
    def vault(secret: str, fail: bool) -> dict[str, str]:
        if fail:
            raise ValueError(f"vault refused {SECRET}")
        return {"stored": secret}

    base = {
        "card": CARD,
        "backup": BACKUP,
        "phone": MOBILE,
        "code": CODE,
        "name": NAME,
        "alias": ALIAS,
        "notes": {MOBILE: "call after 6pm"},
    }
    with Runtime(shared_url) as rt:
        assert rt.execute(pay, {**base, "fail": False}, correlation_id="pii").ok
        assert rt.execute(pay, {**base, "fail": False}, correlation_id="pii").ok
        assert rt.execute(pay, {**base, "fail": True}, correlation_id="pii").status == "failed"
        assert rt.execute(vault, {"secret": SECRET, "fail": False}, correlation_id="pii").ok
        assert rt.execute(vault, {"secret": SECRET, "fail": True}).status == "failed"
    dumped = database_text(shared_url)
    assert b"redacted:" in dumped  # the search does see the rows
    leaks = [
        f"{what}: {form!r}"
        for what, forms in leaked_forms().items()
        for form in forms
        for variant in {form, json.dumps(form, ensure_ascii=False)[1:-1]}
        if variant.encode() in dumped
    ]
    assert leaks == [], "raw values in the database:\n" + "\n".join(leaks)


PHONE = "+51 951 234 567"


STREET = "Jirón Puno 1234, Yunguyo"


def test_redacted_values_reach_no_table(shared_url: str, tmp_path: Path) -> None:
    @tool(
        effect=Effect.MUTATE_EXTERNAL,
        redact=["customer.phone", "address.*"],
        key=lambda i: f"welcome:{i['customer']['phone']}",
    )
    def welcome(customer: dict[str, Any], address: dict[str, Any]) -> dict[str, Any]:
        if customer["name"] == "Fails":
            raise ValueError(f"WhatsApp refused {customer['phone']}")
        return {"to": customer["phone"], "street": address["street"], "ok": True}

    @rule(applies_to="welcome")
    def no_blocked_numbers(inp: dict[str, Any], ctx: RuleContext) -> Deny | bool:
        if inp["customer"]["name"] == "Blocked":
            return Deny(f"{inp['customer']['phone']} opted out")
        return True

    rt = Runtime(shared_url, rules=[no_blocked_numbers])
    base = {"address": {"street": STREET, "city": "Yunguyo"}}

    def call(name: str, phone: str = PHONE) -> Any:
        return rt.execute(
            welcome, {"customer": {"name": name, "phone": phone}, **base}, correlation_id="pii"
        )

    first = call("Maria")
    assert first.status == Status.EXECUTED and first.output["to"] == PHONE  # the caller's own
    again = call("Maria")
    assert again.status == Status.CACHED  # the key still works on the full input
    assert again.output["to"].startswith("redacted:") and again.output["ok"] is True
    assert call("Maria", "+51 900 000 000").status == Status.EXECUTED  # another phone
    assert call("Blocked", "+51 911 111 111").status == Status.REJECTED
    assert call("Fails", "+51 922 222 222").status == Status.FAILED
    events = rt.events(correlation_id="pii")
    assert events[0].input["customer"]["name"] == "Maria"
    assert events[0].input["customer"]["phone"].startswith("redacted:")
    assert events[0].input["address"]["street"].startswith("redacted:")
    assert first.input_hash == rt.events(status="executed")[0].input_hash
    rt.close()
    raw = [PHONE, "951 234 567", STREET, "+51 911 111 111", "+51 922 222 222", "+51 900 000 000"]
    dumped = dump_database(shared_url)
    for value in raw:
        assert value not in dumped, f"{value!r} reached the database"
    assert "redacted:" in dumped


def dump_database(url: str) -> str:
    """Every byte the database holds, as text: SQLite files, or every table's rows."""
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite:///"))
        return "".join(
            Path(f"{path}{suffix}").read_bytes().decode("utf-8", "replace")
            for suffix in ("", "-wal")
            if Path(f"{path}{suffix}").exists()
        )
    from dar.store import split_schema

    base, schema = split_schema(url)
    out = []
    with psycopg.connect(base) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')
            out += [r[0] for r in rows]
    return "\n".join(out)


def test_a_redacted_value_refused_before_redaction_is_not_in_the_reason(
    make_runtime: Callable[..., Runtime],
) -> None:
    # The refusal of {"card": 41111111111111111} once stored the number in its reason.
    @tool(effect=Effect.MUTATE_EXTERNAL, redact=["card"])
    def pay(card: int, amount: int) -> str:
        return "paid"

    rt = make_runtime(tools=[pay])
    card = {"card": 41111111111111111, "amount": 5}
    for given in (card, '{"card": 41111111111111111, "amount": 5}'):
        res = rt.call("pay", given)
        assert res.status == Status.REJECTED and (res.reason or "").startswith("at $.card")
        assert "41111111111111111" not in (res.reason or "")
    assert all("41111111111111111" not in (e.rejection_reason or "") for e in rt.events())
    assert all("41111111111111111" not in (e.input or "") for e in rt.events())
