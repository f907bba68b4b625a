"""Issue 11 ("Airtight"): exactly-once and integrity holes, on every store.

Each test is named after the issue's item it pins down and quotes the item's claim. They
fail on the code the issue was filed against and pass once the item is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from dar import (
    AsyncRuntime,
    ConfigurationError,
    Deny,
    Effect,
    Runtime,
    Status,
    rule,
    tool,
)
from dar.core.ops import GetClaim, Resolve
from dar.core.rows import resolved_row

MakeRuntime = Callable[..., Runtime]

allow_all = rule(applies_to="*", name="allow_all")(lambda inp, ctx: True)


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


# --- item 1: one immutable input ---------------------------------------------------------------


def test_item_01_a_rule_that_mutates_the_input_cannot_change_what_the_handler_runs_on(
    make_runtime: MakeRuntime,
) -> None:
    """1. The handler can run on another input than the one hashed, judged and logged."""
    seen: list[dict[str, Any]] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def transfer(to: str, amount: int, meta: dict[str, Any]) -> dict[str, Any]:
        seen.append({"to": to, "amount": amount, "meta": meta})
        return {"sent": amount, "to": to}

    @rule(applies_to="transfer")
    def meddling(inp: dict[str, Any], ctx: Any) -> bool:
        # A careless (or hostile) rule normalises the input in place. A read-only view
        # refuses the writes (TypeError); a copy absorbs them. Either way they must not
        # reach the handler.
        for write in (
            lambda: inp.__setitem__("to", inp["to"].strip().replace("alice", "mallory")),
            lambda: inp.__setitem__("amount", 1_000_000),
            lambda: inp["meta"].__setitem__("note", "rewritten"),
            lambda: inp["meta"]["tags"].append("injected"),
        ):
            with contextlib.suppress(TypeError):
                write()
        return True

    rt = make_runtime(rules=[meddling])
    original = {"to": " alice ", "amount": 5, "meta": {"note": "rent", "tags": ["a"]}}
    expected = copy.deepcopy(original)
    res = rt.execute(transfer, original, correlation_id="i1")
    assert res.status == Status.EXECUTED
    assert seen == [expected], "the handler ran on an input the rule rewrote"
    executed = rt.events(correlation_id="i1", status="executed")[0]
    assert executed.input == seen[0], "the log says one input, the handler ran another"


def test_item_01_a_lying_dict_subclass_runs_the_handler_on_what_was_hashed(
    make_runtime: MakeRuntime,
) -> None:
    """1. ... a hostile `dict` subclass does the same."""
    import dar

    seen: list[dict[str, Any]] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def transfer(to: str, amount: int) -> dict[str, Any]:
        seen.append({"to": to, "amount": amount})
        return {"to": to}

    class Lying(dict):  # type: ignore[type-arg]
        def __getitem__(self, k: str) -> Any:
            return "mallory" if k == "to" else super().__getitem__(k)

        def keys(self) -> Any:
            return ["to", "amount"]

        def items(self) -> Any:
            return [("to", "mallory"), ("amount", 999)]

        def __iter__(self) -> Iterator[str]:
            return iter(["to", "amount"])

    rt = make_runtime()
    res = rt.execute(transfer, Lying(to="alice", amount=5), correlation_id="i1b")
    if res.status == Status.REJECTED:  # refusing such an input outright is also airtight
        assert seen == []
        return
    assert res.status == Status.EXECUTED
    assert res.input_hash == dar.input_hash({"to": "alice", "amount": 5})
    assert seen == [{"to": "alice", "amount": 5}], "handler saw other values than were hashed"
    assert rt.events(correlation_id="i1b", status="executed")[0].input == seen[0]


# --- item 2: keys scoped by tool ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["explicit_key", "key_function"])
def test_item_02_the_same_key_in_two_tools_runs_both(make_runtime: MakeRuntime, how: str) -> None:
    """2. Keys collide across tools."""
    ran: Counter[str] = Counter()
    keyfn = (lambda i: f"notify:{i['order']}") if how == "key_function" else None

    @tool(effect=Effect.MUTATE_EXTERNAL, key=keyfn)
    def send_email(order: str) -> dict[str, str]:
        ran["email"] += 1
        return {"via": "email"}

    @tool(effect=Effect.MUTATE_EXTERNAL, key=keyfn)
    def send_sms(order: str) -> dict[str, str]:
        ran["sms"] += 1
        return {"via": "sms"}

    rt = make_runtime()
    key = {"key": "notify:A"} if how == "explicit_key" else {}
    email = rt.execute(send_email, {"order": "A"}, **key)
    sms = rt.execute(send_sms, {"order": "A"}, **key)
    assert (email.status, email.output) == (Status.EXECUTED, {"via": "email"})
    assert (sms.status, sms.output) == (Status.EXECUTED, {"via": "sms"}), "answered by send_email"
    assert ran == {"email": 1, "sms": 1}
    assert email.key != sms.key
    # Each is still exactly-once on its own.
    assert rt.execute(send_sms, {"order": "A"}, **key).output == {"via": "sms"}
    assert ran == {"email": 1, "sms": 1}


# --- item 3: keys, correlation ids and reasons are validated -----------------------------------


@pytest.mark.parametrize("bad", [None, 42, {"order": "A"}, ""], ids=repr)
def test_item_03_a_key_function_must_return_a_non_empty_str(
    make_runtime: MakeRuntime, bad: Any
) -> None:
    """3. Key functions are trusted blindly."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: bad)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    rt = make_runtime()
    res = rt.execute(charge, {"order": "A"}, correlation_id="i3")
    assert res.status == Status.REJECTED, f"key {bad!r} was accepted as {res.key!r}"
    assert "key function" in (res.reason or "")
    assert ran == []
    assert [e.status for e in rt.events(correlation_id="i3")] == ["rejected"]


@pytest.mark.parametrize(
    "kwargs",
    [{"key": 42}, {"key": ""}, {"key": None, "correlation_id": 7}, {"correlation_id": b"s"}],
    ids=["int-key", "empty-key", "int-correlation-id", "bytes-correlation-id"],
)
def test_item_03_explicit_keys_and_correlation_ids_must_be_str(
    make_runtime: MakeRuntime, kwargs: dict[str, Any]
) -> None:
    """3. ... apply the same to explicit `key=`, `correlation_id`."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    rt = make_runtime()
    with pytest.raises(ConfigurationError):
        rt.execute(charge, {"order": "A"}, **kwargs)
    assert ran == [] and rt.events() == []


@pytest.mark.parametrize("reason", [{"why": "no"}, 42, None], ids=repr)
def test_item_03_a_deny_reason_that_is_not_str_fails_closed(
    make_runtime: MakeRuntime, reason: Any
) -> None:
    """3. ... and `Deny(reason)` (a dict reason raises a raw `ProgrammingError`)."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_EXTERNAL)
    def charge(order: str) -> str:
        ran.append(order)
        return "ok"

    weird = rule(applies_to="*", name="weird_reason")(lambda i, c: Deny(reason))
    rt = make_runtime(rules=[weird])
    res = rt.execute(charge, {"order": "A"}, correlation_id="i3d")
    assert res.status == Status.REJECTED and ran == []
    assert isinstance(res.reason, str) and "weird_reason" in (res.reason + (res.rule or ""))
    assert [e.status for e in rt.events(correlation_id="i3d")] == ["rejected"]


# --- item 4: redaction does not change the key -------------------------------------------------


@pytest.mark.parametrize("how", ["key_function", "explicit_key"])
def test_item_04_a_deploy_that_changes_redact_keeps_the_key(
    make_runtime: MakeRuntime, how: str
) -> None:
    """4. A deploy that adds `redact=` changes the idempotency key."""
    ran: list[str] = []
    keyfn = (lambda i: f"pay:{i['order']}") if how == "key_function" else None
    explicit = {"key": "pay:A"} if how == "explicit_key" else {}

    def version(redact: Any) -> Any:
        @tool(name="pay", effect=Effect.MUTATE_EXTERNAL, key=keyfn, redact=redact)
        def pay(order: str, card: str, phone: str) -> dict[str, str]:
            ran.append(order)
            return {"paid": order}

        return pay

    inp = {"order": "A", "card": "4111 1111 1111 1111", "phone": "+51 900 111 222"}
    first = make_runtime().execute(version(None), inp, **explicit)
    assert first.status == Status.EXECUTED
    deploys = [["card"], ["phone"], lambda v: v, None]  # add, change, function, remove
    for redact in deploys:
        again = make_runtime().execute(version(redact), inp, **explicit)
        assert again.status == Status.CACHED, f"redact={redact!r} ran the effect again"
    assert ran == ["A"]


# --- item 5: resolve refuses a live claim (store level; the CLI is in test_airtight_cli) -------


def test_item_05_store_resolve_refuses_a_running_claim_with_a_live_lease(
    make_runtime: MakeRuntime, runtime_kind: str
) -> None:
    """5. `dar resolve --not-executed` releases a claim that is still running with a live
    lease."""
    release = threading.Event()
    ran: list[str] = []

    def wire_sync(n: int) -> str:
        ran.append("wire")
        release.wait(30)
        return "sent"

    async def wire_async(n: int) -> str:  # an async runtime's loop must not be blocked
        ran.append("wire")
        await asyncio.to_thread(release.wait, 30)
        return "sent"

    wire = tool(name="wire", effect=Effect.IRREVERSIBLE, key=lambda i: f"wire:{i['n']}")(
        wire_sync if runtime_kind == "sync" else wire_async
    )

    rt = make_runtime(rules=[allow_all])
    worker = threading.Thread(target=rt.execute, args=(wire, {"n": 1}))
    worker.start()
    try:
        wait_until(lambda: ran == ["wire"])
        key = next(e.idempotency_key for e in rt.events(status="started"))
        assert key is not None
        claim = rt.store.get_claim(GetClaim(key))
        assert claim is not None and claim.state == "running"
        now = time.time()
        event = resolved_row(claim, False, None, None, now)
        with pytest.raises(ValueError, match=r"lease|running") as info:
            rt.store.resolve(Resolve(key, False, None, now, event))
        assert claim.owner is not None and claim.owner in str(info.value)
        assert rt.store.get_claim(GetClaim(key)).state == "running"  # type: ignore[union-attr]
    finally:
        release.set()
        worker.join(30)


# --- item 9: values Postgres cannot store are still recorded ------------------------------------


def test_item_09_an_output_with_a_nul_character_is_recorded(store_url: str) -> None:
    """9. Outputs and errors Postgres cannot store (a NUL character in an output or error
    text, an over-long key) make `execute` raise after the handler ran."""
    ran: list[str] = []

    @tool(effect=Effect.MUTATE_LOCAL, lease=300)
    def render(n: int) -> dict[str, str]:
        ran.append("render")
        return {"text": "before\u0000after"}

    with Runtime(store_url, wait=0.5) as rt:
        first = rt.execute(render, {"n": 1})
        assert first.status == Status.EXECUTED
        again = rt.execute(render, {"n": 1})
        assert again.status == Status.CACHED, f"outcome lost: {again.status}"
        assert ran == ["render"]
        assert [e.status for e in rt.events()] == ["started", "executed", "cached"]


def test_item_09_an_error_with_a_nul_character_is_recorded(store_url: str) -> None:
    """9. ... a NUL character in an output or error text."""

    @tool(effect=Effect.MUTATE_LOCAL)
    def parse(n: int) -> str:
        raise ValueError("bad byte \x00 in record")

    with Runtime(store_url, wait=0.5) as rt:
        res = rt.execute(parse, {"n": 1})
        assert res.status == Status.FAILED and res.error
        assert [e.status for e in rt.events()] == ["started", "failed"]


def test_item_09_an_over_long_key_never_loses_an_outcome(store_url: str) -> None:
    """9. ... an over-long key."""
    import secrets

    ran: list[str] = []

    @tool(effect=Effect.MUTATE_LOCAL)
    def note(n: int) -> str:
        ran.append("note")
        return "ok"

    key = secrets.token_hex(5000)  # 10,000 incompressible characters
    with Runtime(store_url, wait=0.5) as rt:
        first = rt.execute(note, {"n": 1}, key=key)
        again = rt.execute(note, {"n": 1}, key=key)
        assert first.status in (Status.EXECUTED, Status.REJECTED)
        if first.status == Status.EXECUTED:
            assert again.status == Status.CACHED
        assert len(ran) <= 1


# --- item 10: a failing redact= function --------------------------------------------------------


def test_item_10_a_redact_function_that_raises_on_the_output_is_recorded(
    store_url: str,
) -> None:
    """10. A `redact=` function that raises on the output makes `execute` raise after the
    handler ran, outcome never recorded."""
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


# --- item 19: replay and trace give what the live call gave ------------------------------------


def crash_in_handler(url: str, folder: str, corr: str) -> None:
    """(Spawned) start an irreversible call whose handler hangs until SIGKILLed."""
    from pathlib import Path

    @tool(name="wire19", effect=Effect.IRREVERSIBLE, key=lambda i: f"wire19:{i['n']}", lease=1)
    def wire(n: int) -> str:
        (Path(folder) / "started").write_text("1")
        time.sleep(3600)
        return "sent"

    Runtime(url, rules=[allow_all]).execute(wire, {"n": 1}, correlation_id=corr)


def _crash(url: str, tmp_path: Any, corr: str) -> None:
    import multiprocessing as mp
    import os
    import signal

    proc = mp.get_context("spawn").Process(target=crash_in_handler, args=(url, str(tmp_path), corr))
    proc.start()
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)


def test_item_19_a_crashed_call_replays_as_indeterminate(shared_url: str, tmp_path: Any) -> None:
    """19. Replay: a crashed call (only a `started` row) replays as `executed` with output
    `None` (should be `indeterminate`)."""
    _crash(shared_url, tmp_path, "s19a")
    forbidden = tool(name="wire19", effect=Effect.IRREVERSIBLE)(lambda **k: 1 / 0)
    with Runtime(shared_url, replay="s19a") as replayer:
        res = replayer.execute(forbidden, {"n": 1})
    assert res.status == Status.INDETERMINATE


def test_item_19_a_reconciled_then_refused_call_is_rejected_in_trace_and_replay(
    shared_url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """19. ... a crashed call whose `reconcile` says "not executed" and which a rule then
    refuses is `rejected` live, but ends in an undocumented `released` row."""
    import json

    from dar import Reconciled
    from dar.cli.main import main

    _crash(shared_url, tmp_path, "s19b")
    time.sleep(1.2)  # the lease (1 s) runs out

    @tool(
        name="wire19",
        effect=Effect.IRREVERSIBLE,
        key=lambda i: f"wire19:{i['n']}",
        lease=1,
        reconcile=lambda inp: Reconciled(executed=False),
    )
    def wire(n: int) -> str:
        raise AssertionError("refused calls do not run")

    closed = rule(applies_to="wire19", name="bank_closed")(lambda i, c: Deny("bank closed"))
    with Runtime(shared_url, rules=[closed]) as rt:
        live = rt.execute(wire, {"n": 1}, correlation_id="s19b")
    assert (live.status, live.rule) == (Status.REJECTED, "bank_closed")
    assert main(["trace", "s19b", "--db", shared_url, "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree[-1]["status"] == "rejected", f"trace shows {tree[-1]['status']}"
    with Runtime(shared_url, replay="s19b") as replayer:
        replayed = [replayer.execute(wire, {"n": 1}) for _ in range(2)]
    assert [r.status for r in replayed] == [Status.INDETERMINATE, Status.REJECTED]


# --- item 6: cancellation during the outcome write ---------------------------------------------


def hold_log_lock(url: str, seconds: float) -> None:
    """From another connection, block every write to the log for ``seconds``."""
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN IMMEDIATE")
    else:
        from dar.store import split_schema

        base, schema = split_schema(url)
        conn = psycopg.connect(base)  # type: ignore[assignment]
        conn.execute(f'LOCK TABLE "{schema}".agent_tool_events IN EXCLUSIVE MODE')

    def release() -> None:
        conn.rollback() if not url.startswith("sqlite:") else conn.execute("ROLLBACK")
        conn.close()

    threading.Timer(seconds, release).start()


@pytest.mark.parametrize("effect", [Effect.MUTATE_LOCAL, Effect.MUTATE_EXTERNAL])
def test_item_06_a_timeout_during_the_outcome_write_does_not_lose_the_outcome(
    shared_url: str, effect: Effect
) -> None:
    """6. Cancellation during the outcome write loses the outcome."""
    ran: list[int] = []

    @tool(name="book", effect=effect, lease=2)
    async def book(n: int) -> dict[str, int]:
        ran.append(n)
        hold_log_lock(shared_url, 1.5)  # the outcome write now waits ~1.5 s
        return {"booked": n}

    async def main() -> tuple[Any, Any]:
        rt = AsyncRuntime(shared_url, wait=1)
        try:
            first: Any
            try:
                first = await asyncio.wait_for(rt.execute(book, {"n": 1}), 0.5)
            except asyncio.TimeoutError:
                first = "timed out"
            await asyncio.sleep(3.0)  # lock released, lease (2 s) expired
            again = await rt.execute(book, {"n": 1})
            return first, again
        finally:
            await rt.close()

    first, again = asyncio.run(main())
    assert first == "timed out"  # the timeout did fire during the outcome write
    assert again.status == Status.CACHED, f"outcome lost: {again.status}"
    assert again.output == {"booked": 1} and ran == [1]


# --- item 20: hit rows survive a normal exit ---------------------------------------------------


def test_item_20_buffered_cached_rows_are_flushed_at_a_normal_exit(tmp_path: Any) -> None:
    """20. Buffered `cached` rows are lost at a normal interpreter exit when the runtime is
    not closed (3 calls left 2 rows)."""
    import subprocess
    import sys

    db = tmp_path / "exit.db"
    script = f"""
from dar import Effect, Runtime, tool
@tool(effect=Effect.MUTATE_LOCAL)
def note(n: int) -> int:
    return n
rt = Runtime({f"sqlite:///{db}"!r})
print([rt.execute(note, {{"n": 1}}).status.value for _ in range(3)])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['executed', 'cached', 'cached']"
    with Runtime(f"sqlite:///{db}") as rt:
        assert Counter(e.status for e in rt.events()) == {"started": 1, "executed": 1, "cached": 2}
