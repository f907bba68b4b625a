"""Postmortem in 30 seconds: trace, stats, replay, tamper evidence, redaction, retention,
on every store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dar import (
    AsyncRuntime,
    Deny,
    Effect,
    ReplayDivergence,
    RuleContext,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.audit.postmortem import call_tree, stats, verify
from dar.cli.main import main
from dar.core.ops import GetClaim

from tests.conftest import Clock
from tests.support.calls import abandon_claim

MakeRuntime = Callable[..., Runtime]


@tool(effect=Effect.READ)
def lookup_zone(town: str) -> str:
    return {"Juliaca": "puno"}.get(town, "unknown")


@tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"msg:{i['order']}")
def send_message(order: str, text: str) -> dict[str, str]:
    return {"sent": order}


@tool(effect=Effect.MUTATE_LOCAL)
def flaky(n: int) -> int:
    raise TimeoutError(f"courier API timed out for {n}")


def make_dispatch(rt: Runtime) -> Any:
    art = getattr(rt, "art", None)  # an AsyncRuntime behind the blocking test interface
    if art is not None:

        @tool(name="dispatch", effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order']}")
        async def adispatch(order: str, town: str) -> dict[str, Any]:
            zone = (await art.execute(lookup_zone, {"town": town})).output
            return {"order": order, "zone": zone}

        return adispatch

    @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"dispatch:{i['order']}")
    def dispatch(order: str, town: str) -> dict[str, Any]:
        zone = rt.execute(lookup_zone, {"town": town}).output
        return {"order": order, "zone": zone}

    return dispatch


@rule(applies_to="dispatch")
def covered(inp: dict[str, Any], ctx: RuleContext) -> Deny | bool:
    return Deny(f"no courier covers {inp['town']}") if inp["town"] == "Yunguyo" else True


def record_session(rt: Runtime, session: str = "s-1") -> list[Any]:
    dispatch = make_dispatch(rt)
    return [
        rt.execute(dispatch, {"order": "A", "town": "Yunguyo"}, correlation_id=session),
        rt.execute(dispatch, {"order": "B", "town": "Juliaca"}, correlation_id=session),
        rt.execute(send_message, {"order": "B", "text": "on its way"}, correlation_id=session),
        rt.execute(send_message, {"order": "B", "text": "on its way"}, correlation_id=session),
        rt.execute(flaky, {"n": 1}, correlation_id=session),
    ]


# --- trace --------------------------------------------------------------------------------------


def test_trace_is_a_tree_in_time_order(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    results = record_session(rt)
    roots = call_tree(rt.events(correlation_id="s-1"))
    assert [(n.outcome.tool_name, n.status) for n in roots] == [
        ("dispatch", "rejected"),
        ("dispatch", "executed"),
        ("send_message", "executed"),
        ("send_message", "cached"),
        ("flaky", "failed"),
    ]
    nested = roots[1].children
    assert [(c.outcome.tool_name, c.status, c.outcome.output) for c in nested] == [
        ("lookup_zone", "executed", "puno")
    ]
    assert roots[0].outcome.rule_name == "covered"
    assert roots[4].outcome.error == "TimeoutError: courier API timed out for 1"
    as_json = roots[1].as_dict()
    assert as_json["children"][0]["tool"] == "lookup_zone" and as_json["key"] == results[1].key


def test_trace_command(
    shared_runtime: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record_session(shared_runtime)
    assert main(["trace", "s-1", "--db", shared_url]) == 0
    out = capsys.readouterr().out
    assert "REJECTED" in out and "no courier covers Yunguyo" in out and "lookup_zone" in out
    assert main(["trace", "s-1", "--db", shared_url, "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree[1]["children"][0]["tool"] == "lookup_zone"
    assert main(["trace", "nope", "--db", shared_url]) == 1


@pytest.fixture
def shared_runtime(shared_url: str) -> Iterator[Runtime]:
    """A runtime on a database the `dar` command can open too."""
    with Runtime(shared_url, rules=[covered]) as rt:
        yield rt


# --- stats --------------------------------------------------------------------------------------


def test_stats(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(rules=[covered], clock=clock, wait=0)
    record_session(rt)
    ext = tool(name="ship", effect=Effect.MUTATE_EXTERNAL, lease=10)(lambda n: n)
    abandon_claim(rt, ext, {"n": 9})
    clock.advance(11)
    assert rt.execute(ext, {"n": 9}).status == Status.INDETERMINATE
    report = stats(rt.events())
    by_tool = {t.tool: t for t in report.tools}
    assert by_tool["send_message"].statuses == {"executed": 1, "cached": 1}
    assert by_tool["send_message"].duplicates_absorbed == 1
    assert by_tool["dispatch"].statuses == {"executed": 1, "rejected": 1}
    assert report.refusals == {"covered": {"no courier covers Yunguyo": 1}}
    assert report.refusal_sessions == {"covered": ["s-1"]}
    assert report.failures == {"TimeoutError: courier API timed out for 1": 1}
    assert report.indeterminate_keys == [f"ship:{rt.events(tool='ship')[0].input_hash}"]
    assert by_tool["dispatch"].p50_ms is not None and by_tool["dispatch"].p99_ms is not None


def test_stats_and_verify_commands(
    shared_runtime: Runtime, shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record_session(shared_runtime)
    assert main(["stats", "--db", shared_url]) == 0
    out = capsys.readouterr().out
    assert "covered" in out and "no courier covers Yunguyo" in out and "s-1" in out
    assert main(["stats", "--db", shared_url, "--json", "--since", "2000-01-01"]) == 0
    assert json.loads(capsys.readouterr().out)["refusals"] == {
        "covered": {"no courier covers Yunguyo": 1}
    }
    assert main(["verify", "--db", shared_url]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", "s-1", "--db", shared_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


# --- replay -------------------------------------------------------------------------------------


def test_replay_serves_the_record_and_runs_nothing(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    recorded = record_session(rt)
    before = len(rt.events())
    replayer = make_runtime(replay="s-1", store=rt.store)

    def forbidden(**kwargs: Any) -> Any:
        raise AssertionError("a handler ran during replay")

    dispatch = tool(name="dispatch", effect=Effect.IRREVERSIBLE)(forbidden)
    send = tool(name="send_message", effect=Effect.MUTATE_EXTERNAL)(forbidden)
    fl = tool(name="flaky", effect=Effect.MUTATE_LOCAL)(forbidden)
    replayed = [
        replayer.execute(dispatch, {"order": "A", "town": "Yunguyo"}),
        replayer.execute(dispatch, {"order": "B", "town": "Juliaca"}),
        replayer.execute(send, {"order": "B", "text": "on its way"}),
        replayer.execute(send, {"order": "B", "text": "on its way"}),
        replayer.execute(fl, {"n": 1}),
    ]
    assert [(r.status, r.output, r.reason, r.error) for r in replayed] == [
        (r.status, r.output, r.reason, r.error) for r in recorded
    ]
    assert len(rt.events()) == before  # nothing written
    assert replayer._replayer is not None and replayer._replayer.finished


def test_replay_reports_the_first_divergence(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(rules=[covered])
    record_session(rt)
    dispatch = tool(name="dispatch", effect=Effect.IRREVERSIBLE)(lambda **k: None)
    send = tool(name="send_message", effect=Effect.MUTATE_EXTERNAL)(lambda **k: None)
    other_input = make_runtime(replay="s-1", store=rt.store)
    other_input.execute(dispatch, {"order": "A", "town": "Yunguyo"})
    with pytest.raises(ReplayDivergence, match="call #2 to dispatch has input hash"):
        other_input.execute(dispatch, {"order": "B", "town": "Cusco"})
    other_tool = make_runtime(replay="s-1", store=rt.store)
    with pytest.raises(ReplayDivergence, match="call #1 is send_message, the record has dispatch"):
        other_tool.execute(send, {"order": "B", "text": "x"})
    assert other_tool._replayer is not None and other_tool._replayer.divergence is not None


def test_async_replay(store_url: str) -> None:
    async def main_() -> list[Any]:
        async with AsyncRuntime(store_url) as rt:
            live = [
                await rt.execute(send_message, {"order": str(i), "text": "t"}, correlation_id="a-1")
                for i in range(2)
            ]
            rt2 = AsyncRuntime(rt.store, replay="a-1")
            again = [
                await rt2.execute(send_message, {"order": str(i), "text": "t"}) for i in range(2)
            ]
            with pytest.raises(ReplayDivergence, match="the record has only 2 calls"):
                await rt2.execute(send_message, {"order": "9", "text": "t"})
            return [live, again]

    live, again = asyncio.run(main_())
    assert [r.output for r in live] == [r.output for r in again]


# --- tamper evidence ----------------------------------------------------------------------------


def tamper(rt: Runtime, sql: str) -> None:
    """Edit history as a database owner would, going around the append-only trigger."""
    store = rt.store
    if hasattr(store, "db"):
        conn = store._conn  # type: ignore[attr-defined]
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(sql)
        for _, create in triggers:
            conn.execute(create)
        return
    schema = store.st.schema  # type: ignore[attr-defined]
    with store.pool.connection() as conn:  # type: ignore[attr-defined]
        conn.execute(f'ALTER TABLE "{schema}".agent_tool_events DISABLE TRIGGER USER')
        conn.execute(sql.replace("agent_tool_events", f'"{schema}".agent_tool_events'))
        conn.execute(f'ALTER TABLE "{schema}".agent_tool_events ENABLE TRIGGER USER')


def check(rt: Runtime, only: str | None = None) -> Any:
    store: Any = rt.store
    return verify(rt.events(), store.chain_heads(), store.checkpoints(), only=only)


@pytest.mark.parametrize("edit", ["update", "delete-middle", "delete-last"])
def test_verify_finds_the_first_broken_link(make_runtime: MakeRuntime, edit: str) -> None:
    rt = make_runtime(rules=[covered])
    record_session(rt, "s-1")
    record_session(rt, "s-2")
    assert check(rt).ok and check(rt).rows == len(rt.events())
    rows = rt.events(correlation_id="s-1")
    target = rows[2] if edit != "delete-last" else rows[-1]
    if edit == "update":
        tamper(rt, f"UPDATE agent_tool_events SET status = 'rejected' WHERE seq = {target.seq}")
    else:
        tamper(rt, f"DELETE FROM agent_tool_events WHERE seq = {target.seq}")
    report = check(rt)
    assert not report.ok
    (broken,) = report.broken  # only the edited session
    assert broken.correlation_id == "s-1"
    if edit == "update":
        assert broken.seq == target.seq
    elif edit == "delete-middle":
        assert broken.seq == rows[3].seq  # the row after the hole no longer follows
    else:
        assert broken.seq == rows[-2].seq and "removed" in broken.reason
    assert check(rt, only="s-2").ok


def test_chain_survives_concurrent_sessions(make_runtime: MakeRuntime) -> None:
    import threading

    rt = make_runtime()
    threads = [
        threading.Thread(
            target=lambda i=i: [
                rt.execute(
                    send_message, {"order": f"{i}-{j}", "text": "x"}, correlation_id=f"c-{i % 3}"
                )
                for j in range(10)
            ]
        )
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = check(rt)
    assert report.ok and report.rows == 120


# --- redaction ----------------------------------------------------------------------------------

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


# --- retention ----------------------------------------------------------------------------------


def test_gc_removes_expired_claims_only(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock)
    short = tool(name="short", effect=Effect.MUTATE_LOCAL, window=10)(lambda n: n)
    rt.execute(short, {"n": 1})
    kept = rt.execute(send_message, {"order": "1", "text": "x"})  # no window: kept forever
    rt.execute(flaky, {"n": 1})  # released
    clock.advance(11)
    store: Any = rt.store
    assert store.gc(clock.now) == 2
    assert store.get_claim(GetClaim(f"short:{rt.events(tool='short')[0].input_hash}")) is None
    assert kept.key is not None and store.get_claim(GetClaim(kept.key)) is not None
    assert len(rt.events()) == 6  # the log is untouched


def test_purge_keeps_the_rest_verifiable(make_runtime: MakeRuntime, clock: Clock) -> None:
    rt = make_runtime(clock=clock, rules=[covered])
    record_session(rt, "old")
    clock.advance(86400)
    cutoff = dt.datetime.fromtimestamp(clock.now - 1, tz=dt.timezone.utc)
    record_session(rt, "new")
    rt.execute(send_message, {"order": "X", "text": "y"}, correlation_id="old")  # old goes on
    store: Any = rt.store
    before = len(rt.events())
    from dar.core.rows import admin_row
    from dar.core.states import EventKind

    rows, points = store.purge(cutoff, clock.now, admin_row(EventKind.PURGED, "test", clock.now))
    remaining = rt.events()
    assert rows > 0 and len(remaining) == before - rows + 1  # + the purge's own row
    assert all(e.created_at >= cutoff for e in remaining if e.status != "purged")
    assert set(points) == {"old"}
    assert remaining[-1].status == "purged"
    report = check(rt)
    assert report.ok, report.broken
    with pytest.raises(Exception, match="append-only"):
        tamper_free_delete(rt)


def tamper_free_delete(rt: Runtime) -> None:
    from tests.conftest import execute_sql

    execute_sql(rt.store, "DELETE FROM agent_tool_events")


def test_purge_command_needs_yes(shared_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Runtime(shared_url) as rt:
        rt.execute(send_message, {"order": "1", "text": "x"})
    assert main(["purge", "--before", "2000-01-01", "--db", shared_url]) == 2
    assert main(["purge", "--before", "2999-01-01", "--db", shared_url, "--yes"]) == 0
    assert "purged 2 events" in capsys.readouterr().out
    assert main(["verify", "--db", shared_url]) == 0
    assert main(["gc", "--db", shared_url]) == 0


def test_app_role_cannot_purge(pg_base_url: str) -> None:
    from tests.conftest import fresh_schema

    schema = fresh_schema()
    rt = Runtime(f"{pg_base_url}?schema={schema}")
    rt.execute(send_message, {"order": "1", "text": "x"})
    role = f"app_{schema}"
    with psycopg.connect(pg_base_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        # Even with DELETE granted by mistake, only the trigger stands in the way.
        conn.execute(f'GRANT SELECT, INSERT, DELETE ON "{schema}".agent_tool_events TO {role}')
    app_url = pg_base_url.replace("postgres@", f"{role}@", 1)
    with (
        psycopg.connect(app_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute("SET LOCAL dar.purge = 'on'")
        conn.execute(f'DELETE FROM "{schema}".agent_tool_events')
    assert len(rt.events()) == 2
    rt.close()
