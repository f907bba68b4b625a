"""`dar mcp-proxy` end to end: a real MCP client, the proxy and a real upstream MCP server, each
its own process, talking MCP over stdio (and streamable HTTP). The upstream counts every
effect in a file, so each test knows how many times the world was touched."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, RequestParamsMeta

import dar
from dar import Effect, Runtime
from dar.core.decide import provider_key
from dar.mcp_proxy.policy import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "support" / "mcp_servers" / "effects_server.py"
LISTED = ROOT / "tests" / "support" / "mcp_servers" / "listed_server.py"
PY = sys.executable
LIMIT = 40.0  # seconds any one test may take, whatever hangs


def environ(effects: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "DAR_TEST_EFFECTS": str(effects)}


def proxy_args(
    db: str, policy: Path | None = None, *extra: str, upstream: Sequence[str] = (str(SERVER),)
) -> list[str]:
    chosen = ["--policy", str(policy)] if policy is not None else []
    return ["-m", "dar", "mcp-proxy", "--db", db, *chosen, *extra, "--", PY, *upstream]


def listed(tmp: Path, tools: list[dict[str, Any]]) -> list[str]:
    """The upstream that lists exactly ``tools`` (raw MCP tool objects)."""
    listing = tmp / "listing.json"
    listing.write_text(json.dumps(tools))
    return [str(LISTED), str(listing)]


def effects(path: Path) -> list[str]:
    """What the upstream did, in order (its start-up lines aside)."""
    if not path.exists():
        return []
    return [x for x in path.read_text().splitlines() if not x.startswith("pid ")]


def pids(path: Path) -> list[int]:
    return [int(x.split()[1]) for x in path.read_text().splitlines() if x.startswith("pid ")]


def status(result: CallToolResult) -> str:
    assert result.meta is not None
    return str(result.meta["dar/status"])


def text(result: CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@asynccontextmanager
async def proxied(
    tmp: Path,
    db: str,
    policy: Path | None = None,
    *extra: str,
    name: str = "proxy",
    upstream: Sequence[str] = (str(SERVER),),
) -> AsyncIterator[ClientSession]:
    """An agent's session with a proxy process (which starts its own upstream)."""
    errlog: TextIO = (tmp / f"{name}.err").open("w")
    args = proxy_args(db, policy, *extra, upstream=upstream)
    params = StdioServerParameters(command=PY, args=args, env=environ(tmp / "effects.txt"))
    try:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    finally:
        errlog.close()


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(LIMIT):
            await main()

    anyio.run(bounded)


def write_policy(path: Path, body: str) -> None:
    """Write a policy so that its edit is seen even within one mtime tick."""
    path.write_text(textwrap.dedent(body))
    later = time.time() + 1 + len(body) % 7
    os.utime(path, (later, later))


BASE_POLICY = """
    from dar import Deny, rule

    effects = {"get_*": "read", "charge": "mutate-external"}

    @rule(applies_to="delete_repo")
    def never_main(args, ctx):
        return Deny("main is protected") if args["name"] == "main" else True

    rules = [never_main]
"""


def with_line(line: str) -> str:
    """`BASE_POLICY` with one more line at the end."""
    return textwrap.dedent(BASE_POLICY) + line + "\n"


# --- the proxy over stdio ------------------------------------------------------------------


def test_list_call_dedupe_refuse_and_log(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    policy = tmp_path / "policy.py"
    write_policy(policy, BASE_POLICY)
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db, policy) as agent:
            listed = {t.name: t for t in (await agent.list_tools()).tools}
            assert listed["create_ticket"].description == "Open a ticket in the tracker."
            assert listed["create_ticket"].output_schema is not None  # passed through
            # Effects decided locally: the lie (readOnlyHint on wipe_disk) is not believed.
            ann = {n: t.annotations for n, t in listed.items()}
            assert ann["get_weather"] is not None and ann["get_weather"].read_only_hint is True
            assert ann["wipe_disk"] is not None and ann["wipe_disk"].read_only_hint is False
            assert ann["wipe_disk"].destructive_hint is True
            assert ann["create_ticket"] is not None and ann["create_ticket"].idempotent_hint

            # A retried call (a timeout on the agent's side, say) reaches the upstream once.
            first = await agent.call_tool("create_ticket", {"title": "printer"})
            again = await agent.call_tool("create_ticket", {"title": "printer"})
            assert (status(first), status(again)) == ("executed", "cached")
            assert first.structured_content == again.structured_content
            assert first.structured_content["title"] == "printer"
            assert text(first) == text(again) and not again.is_error

            # Refusals: by a policy rule, and fail-closed for an irreversible tool no rule
            # judges; the upstream never hears of them, the agent reads why.
            refused = await agent.call_tool("delete_repo", {"name": "main"})
            assert refused.is_error and status(refused) == "rejected"
            assert "main is protected" in text(refused)
            lied = await agent.call_tool("wipe_disk", {"path": "/"})
            assert lied.is_error and status(lied) == "rejected"
            assert "irreversible" in text(lied) and str(policy) in text(lied)
            allowed = await agent.call_tool("delete_repo", {"name": "scratch"})
            assert status(allowed) == "executed"

            # A read runs every time; an upstream isError is `failed`, its own words kept.
            for _ in range(2):
                assert status(await agent.call_tool("get_weather", {"city": "Oslo"})) == "executed"
            flaky = await agent.call_tool("flaky", {"x": 1})
            assert flaky.is_error and status(flaky) == "failed"
            assert "flaky failed on 1" in text(flaky)

            # The client's own session id, when it sends one.
            named = await agent.call_tool(
                "create_ticket",
                {"title": "named"},
                # The MCP types declare no other keys: dar reads its own from the request.
                meta=cast("RequestParamsMeta", {"dar/correlation_id": "conv-7"}),
            )
            assert status(named) == "executed"

            # Prompts and resources pass through.
            prompt = await agent.get_prompt("review", {"topic": "the plan"})
            assert "review the plan" in prompt.messages[0].content.text  # type: ignore[union-attr]
            resources = await agent.list_resources()
            assert [str(r.uri) for r in resources.resources] == ["notes://today"]

    run(main)
    assert effects(eff) == [
        "create_ticket printer",
        "delete_repo scratch",
        "get_weather Oslo",
        "get_weather Oslo",
        "flaky 1",
        "create_ticket named",
    ]
    with Runtime(db) as rt:
        rows = [e for e in rt.events() if e.status != "started"]
        sessions = {e.correlation_id for e in rows}
        assert len(sessions) == 2 and "conv-7" in sessions  # the proxy's session, and conv-7
        seen = [(e.tool_name, e.status) for e in rows if e.correlation_id != "conv-7"]
        assert seen == [
            ("create_ticket", "executed"),
            ("create_ticket", "cached"),
            ("delete_repo", "rejected"),
            ("wipe_disk", "rejected"),
            ("delete_repo", "executed"),
            ("get_weather", "executed"),
            ("get_weather", "executed"),
            ("flaky", "failed"),
        ]
        recorded = next(e for e in rows if e.status == "executed")
        assert recorded.output["structuredContent"]["title"] == "printer"


def test_the_upstream_is_told_the_calls_key_in_meta(tmp_path: Path) -> None:
    """The key a provider deduplicates by (`dar.current_call`'s) rides in the forwarded
    request's ``_meta``, with the call's row, session and attempt."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db) as agent:
            session = cast("RequestParamsMeta", {"dar/correlation_id": "conv-9"})
            for expected in ("executed", "cached"):
                sent = await agent.call_tool("send_invoice", {"to": "ana"}, meta=session)
                assert status(sent) == expected

    run(main)
    [line] = effects(eff)  # the retry did not reach the upstream
    said = json.loads(line.removeprefix("send_invoice ana "))
    with Runtime(db) as rt:
        [started] = rt.events(tool="send_invoice", status="started")
        assert started.idempotency_key is not None
        key = provider_key(rt.store.redaction_salt(), started.idempotency_key)
    assert said == {
        "dar/idempotency_key": key,
        "dar/event_id": started.event_id,
        "dar/correlation_id": "conv-9",
        "dar/attempt": 1,
    }


def test_two_sessions_at_once_reach_the_upstream_once(tmp_path: Path, pg_url: str) -> None:
    """Two agents, two proxy processes (each with its own upstream), one Postgres."""
    eff = tmp_path / "effects.txt"
    results: list[CallToolResult] = []

    async def agent(name: str, ready: anyio.Event, go: anyio.Event) -> None:
        async with proxied(tmp_path, pg_url, None, name=name) as session:
            await session.list_tools()
            ready.set()
            await go.wait()
            results.append(await session.call_tool("create_ticket", {"title": "same"}))

    async def main() -> None:
        readies = [anyio.Event(), anyio.Event()]
        go = anyio.Event()
        async with anyio.create_task_group() as tg:
            for i, ready in enumerate(readies):
                tg.start_soon(agent, f"proxy{i}", ready, go)
            for ready in readies:
                await ready.wait()
            go.set()

    run(main)
    assert effects(eff) == ["create_ticket same"]
    assert sorted(status(r) for r in results) == ["cached", "executed"]
    assert results[0].structured_content == results[1].structured_content


def test_policy_hot_reload_and_a_broken_policy(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    policy = tmp_path / "policy.py"
    write_policy(policy, BASE_POLICY)
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db, policy) as agent:
            assert status(await agent.call_tool("delete_repo", {"name": "main"})) == "rejected"
            write_policy(policy, BASE_POLICY.replace('"main"', '"prod"'))
            assert status(await agent.call_tool("delete_repo", {"name": "main"})) == "executed"
            # A syntax error keeps the policy in force (which allows this call; no policy
            # at all would refuse it, delete_repo being irreversible).
            write_policy(policy, BASE_POLICY + "\nrules = [never_main\n")
            assert status(await agent.call_tool("delete_repo", {"name": "old"})) == "executed"
            assert status(await agent.call_tool("delete_repo", {"name": "prod"})) == "rejected"

    run(main)
    assert effects(eff) == ["delete_repo main", "delete_repo old"]
    err = (tmp_path / "proxy.err").read_text()
    assert "policy not reloaded" in err and "syntax error" in err


def test_reload_keeps_the_policy_when_redact_is_invalid(tmp_path: Path) -> None:
    """An edit whose ``redact`` entry cannot be used (a string where a list of paths goes) is
    refused at reload, like a syntax error: the previous policy stays in force, every tool
    keeps working, and the operator reads which entry of which file is wrong."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    policy = tmp_path / "policy.py"
    write_policy(policy, BASE_POLICY)
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db, policy) as agent:
            assert status(await agent.call_tool("charge", {"amount": 1})) == "executed"
            write_policy(policy, with_line('redact = {"charge": "note"}'))
            kept = await agent.call_tool("charge", {"amount": 2})
            assert status(kept) == "executed" and text(kept) == "charged 2"
            refused = await agent.call_tool("delete_repo", {"name": "main"})
            assert status(refused) == "rejected"  # the rules of the policy in force
            # A usable edit is taken again.
            write_policy(policy, with_line('redact = {"charge": ["amount"]}'))
            assert status(await agent.call_tool("charge", {"amount": 3})) == "executed"

    run(main)
    assert effects(eff) == ["charge 1", "charge 2", "charge 3"]
    said = [x for x in (tmp_path / "proxy.err").read_text().splitlines() if "reloaded" in x]
    assert len(said) == 2, said
    assert "policy not reloaded" in said[0]
    assert f"{policy}: redact['charge']" in said[0] and "list of paths" in said[0]
    assert said[1].endswith(f"policy reloaded from {policy}")
    with Runtime(db) as rt:
        done = [e for e in rt.events(tool="charge") if e.status == "executed"]
        assert [e.input for e in done][:2] == [{"amount": 1}, {"amount": 2}]
        assert str(done[2].input["amount"]).startswith("redacted:")


UNUSABLE = [
    ('redact = {"charge": "note"}', "redact['charge']"),
    ('redact = {"charge": ["to", 3]}', "redact['charge']"),
    ('redact = {"charge": {"to": 1}}', "redact['charge']"),
    ('redact = {"char*": [""]}', "redact['char*']"),
    ('keys = {"charge": lambda: "k"}', "keys['charge']"),
    ('keys = {"charge": lambda a, b: "k"}', "keys['charge']"),
    ("rules = [never_main, never_main]", "never_main"),
    ('guards = {"charge": ["Budget(2)"]}', "guards['charge']"),
]


def test_a_policy_guards_an_upstream_tool_with_a_budget(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    policy = tmp_path / "policy.py"
    budget = 'from dar import Budget\nguards = {"char*": [Budget(3, of="amount", within="1h")]}'
    write_policy(policy, with_line(budget))
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db, policy) as agent:
            assert status(await agent.call_tool("charge", {"amount": 2})) == "executed"
            over = await agent.call_tool("charge", {"amount": 3})
            assert status(over) == "rejected"
            assert "2 of 3 used in the last 1h; this charge needs 3" in text(over)
            assert status(await agent.call_tool("charge", {"amount": 1})) == "executed"

    run(main)
    assert effects(eff) == ["charge 2", "charge 1"]


def test_policy_with_an_unusable_entry_does_not_load(tmp_path: Path) -> None:
    """Every entry the proxy would only use later (a redact spec compiled at the first
    call, a key function called at each) is checked when the file is loaded."""
    policy = tmp_path / "policy.py"
    for line, entry in UNUSABLE:
        write_policy(policy, with_line(line))
        with pytest.raises(PolicyError) as caught:
            load_policy(policy)
        assert str(caught.value).startswith(f"{policy}: "), line
        assert entry in str(caught.value), line
    write_policy(policy, with_line('redact = {"charge": ["amount", "output.result"]}'))
    assert load_policy(policy).redact_for("charge") == ["amount", "output.result"]


def test_upstream_dies_mid_call(tmp_path: Path) -> None:
    """The upstream is killed while it charges a card: the call is indeterminate, never run
    again silently; the proxy restarts the upstream and serves on; once an operator says
    what happened, the same call answers from the record."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"
    key: list[str] = []

    async def killer() -> None:
        while "charge 5" not in effects(eff):
            await anyio.sleep(0.02)
        os.kill(pids(eff)[-1], signal.SIGKILL)

    async def main() -> None:
        async with proxied(tmp_path, db) as agent:
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                lost = await agent.call_tool("charge", {"amount": 5, "wait": 30})
            assert lost.is_error and status(lost) == "indeterminate"
            assert "dar resolve" in text(lost)
            assert lost.meta is not None
            key.append(lost.meta["dar/key"])
            again = await agent.call_tool("charge", {"amount": 5, "wait": 30})
            assert status(again) == "indeterminate"
            # The proxy restarted the upstream and keeps serving.
            fresh = await agent.call_tool("charge", {"amount": 6})
            assert status(fresh) == "executed" and text(fresh) == "charged 6"
            said = "charged 5 (per the bank)"
            record = {
                "content": [{"type": "text", "text": said}],
                "structuredContent": {"result": said},
            }
            done = subprocess.run(
                [PY, "-m", "dar", "--db", db, "resolve", key[0], "--executed",
                 "--output", json.dumps(record)],
                env=environ(eff), capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            answered = await agent.call_tool("charge", {"amount": 5, "wait": 30})
            assert status(answered) == "cached" and not answered.is_error
            assert text(answered) == said

    run(main)
    assert effects(eff) == ["charge 5", "charge 6"]
    assert len(pids(eff)) == 2  # restarted once
    with Runtime(db) as rt:
        kinds = [e.status for e in rt.events(key=key[0])]
        assert kinds[:3] == ["started", "cancelled", "indeterminate"]
        assert kinds[-2:] == ["resolved", "cached"]


async def lose(agent: ClientSession, eff: Path, tool: str, args: dict[str, Any]) -> str:
    """Call ``tool`` and kill the upstream while it acts: the call's key, indeterminate."""
    line = f"{tool} {next(iter(args.values()))}"

    async def killer() -> None:
        while line not in effects(eff):
            await anyio.sleep(0.02)
        os.kill(pids(eff)[-1], signal.SIGKILL)

    async with anyio.create_task_group() as tg:
        tg.start_soon(killer)
        lost = await agent.call_tool(tool, {**args, "wait": 30})
    assert lost.is_error and status(lost) == "indeterminate"
    assert lost.meta is not None
    return str(lost.meta["dar/key"])


def resolve(db: str, eff: Path, key: str, output: object) -> None:
    """What an operator runs: ``dar resolve KEY --executed --output JSON``."""
    done = subprocess.run(
        [PY, "-m", "dar", "--db", db, "resolve", key, "--executed",
         "--output", json.dumps(output)],
        env=environ(eff), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_resolved_output_answers_with_structured_content_that_fits_the_schema(
    tmp_path: Path,
) -> None:
    """A tool with an ``outputSchema``, resolved by an operator after it was lost mid-call:
    the next identical call answers the recorded output as structured content the official
    client accepts, whether the operator wrote the object itself or a tool result whose
    text is that object as JSON (the README's form)."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db) as agent:
            listed = {t.name: t for t in (await agent.list_tools()).tools}
            assert listed["transfer"].output_schema is not None
            plain = await lose(agent, eff, "transfer", {"amount": 5})
            shaped = await lose(agent, eff, "transfer", {"amount": 6})
            resolve(db, eff, plain, {"id": "TR-5", "amount": 5})
            as_text = json.dumps({"id": "TR-6", "amount": 6})
            resolve(db, eff, shaped, {"content": [{"type": "text", "text": as_text}]})

            first = await agent.call_tool("transfer", {"amount": 5, "wait": 30})
            assert status(first) == "cached" and not first.is_error
            assert first.structured_content == {"id": "TR-5", "amount": 5}
            assert json.loads(text(first)) == {"id": "TR-5", "amount": 5}
            second = await agent.call_tool("transfer", {"amount": 6, "wait": 30})
            assert status(second) == "cached" and not second.is_error
            assert second.structured_content == {"id": "TR-6", "amount": 6}
            assert text(second) == as_text

    run(main)
    assert effects(eff) == ["transfer 5", "transfer 6"]


def test_resolved_output_that_does_not_fit_the_schema_answers_an_error(tmp_path: Path) -> None:
    """A resolved output the tool's ``outputSchema`` rejects is never sent as a success the
    client would choke on: the answer is ``isError`` and says what does not fit. A tool
    without an output schema answers its record as before."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"

    async def main() -> None:
        async with proxied(tmp_path, db) as agent:
            wrong = await lose(agent, eff, "transfer", {"amount": 7})
            prose = await lose(agent, eff, "transfer", {"amount": 8})
            note = await lose(agent, eff, "post_note", {"text": "hello"})
            resolve(db, eff, wrong, {"id": "TR-7", "amount": "seven"})
            said = "moved 8 (per the bank)"
            resolve(db, eff, prose, {"content": [{"type": "text", "text": said}]})
            resolve(db, eff, note, {"content": [{"type": "text", "text": "posted hello"}]})

            typed = await agent.call_tool("transfer", {"amount": 7, "wait": 30})
            assert typed.is_error and status(typed) == "cached"
            assert typed.structured_content is None
            assert "outputSchema" in text(typed) and "$.amount" in text(typed)
            assert "'seven' is not of type 'integer'" in text(typed)
            untyped = await agent.call_tool("transfer", {"amount": 8, "wait": 30})
            assert untyped.is_error and status(untyped) == "cached"
            assert "outputSchema" in text(untyped) and "not JSON" in text(untyped)
            assert said in text(untyped)
            plain = await agent.call_tool("post_note", {"text": "hello", "wait": 30})
            assert status(plain) == "cached" and not plain.is_error
            assert text(plain) == "posted hello" and plain.structured_content is None

    run(main)
    assert effects(eff) == ["transfer 7", "transfer 8", "post_note hello"]


# --- the arguments of upstream tools, checked against their inputSchema ---------------------

PAY_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "currency": {"enum": ["EUR", "USD"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}},
                "required": ["sku"],
            },
        },
    },
    "required": ["amount", "currency"],
    "additionalProperties": False,
}
#: ``"nonsense"`` is no JSON type: the schema itself is invalid.
BROKEN_SCHEMA = {"type": "object", "properties": {"n": {"type": "nonsense"}}}

#: A rule that crashes (a TypeError, a KeyError) on arguments of the wrong shape.
PAY_POLICY = """
    from dar import Deny, rule

    effects = {"*": "mutate-external"}

    @rule(applies_to="pay")
    def at_most_100(args, ctx):
        return Deny("over 100") if args["amount"] > 100 else True

    rules = [at_most_100]
"""


@dar.tool(effect=Effect.MUTATE_EXTERNAL)
def pay(amount: float, currency: Literal["EUR", "USD"]) -> str:
    """The same arguments as a tool of dar's own, to compare the refusals."""
    return "paid"


def test_upstream_arguments_are_checked_against_the_input_schema_before_the_rules(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    policy = tmp_path / "policy.py"
    write_policy(policy, PAY_POLICY)
    upstream = listed(
        tmp_path,
        [
            {"name": "pay", "inputSchema": PAY_SCHEMA},
            {"name": "broken", "inputSchema": BROKEN_SCHEMA},
        ],
    )
    wrong_type = {"amount": "lots", "currency": "EUR"}
    missing = {"currency": "EUR"}
    extra = {"amount": 1, "currency": "EUR", "tip": 1}
    answers: list[CallToolResult] = []

    async def main() -> None:
        async with proxied(tmp_path, db, policy, upstream=upstream) as agent:
            for args in (wrong_type, missing, extra):
                answers.append(await agent.call_tool("pay", args))
            nested = {"currency": "GBP", "items": [{"sku": "tea"}, {"sku": 7}, {}]}
            answers.append(await agent.call_tool("pay", nested))
            # Arguments that fit reach the rule, and the upstream when it allows them.
            answers.append(await agent.call_tool("pay", {"amount": 500, "currency": "EUR"}))
            answers.append(await agent.call_tool("pay", {"amount": 5, "currency": "USD"}))
            # An invalid schema checks nothing; the operator is told once.
            for n in ("x", "y"):
                answers.append(await agent.call_tool("broken", {"n": n}))

    run(main)
    assert [status(a) for a in answers] == ["rejected"] * 5 + ["executed"] * 3
    assert text(answers[0]).startswith(
        "Refused: invalid arguments: $.amount: expected number, got string. Nothing was done."
    )
    assert effects(tmp_path / "effects.txt") == [
        'pay {"amount": 5, "currency": "USD"}',
        'broken {"n": "x"}',
        'broken {"n": "y"}',
    ]
    with Runtime(db) as rt:
        refused = [(e.rejection_reason, e.rule_name) for e in rt.events(status="rejected")]
    with Runtime(f"sqlite:///{tmp_path / 'owned.db'}", tools=[pay]) as owned:
        # The refusals of dar's own tool, for the arguments both can judge.
        same = [(owned.call("pay", a).reason, None) for a in (wrong_type, missing, extra)]
    assert refused[:3] == same
    assert refused[3:] == [
        (
            "invalid arguments: $.amount: required, missing; $.currency: expected one of "
            '"EUR", "USD", got "GBP"; $.items[1].sku: expected string, got integer; '
            "$.items[2].sku: required, missing",
            None,
        ),
        ("over 100", "at_most_100"),
    ]
    said = (tmp_path / "proxy.err").read_text()
    assert said.count("the arguments of upstream tool 'broken' are not checked") == 1
    assert "its inputSchema is not a valid JSON Schema ($.properties.n.type: " in said


def test_check_lists_effects_and_rules(tmp_path: Path) -> None:
    policy = tmp_path / "policy.py"
    write_policy(policy, BASE_POLICY)
    done = subprocess.run(
        [PY, *proxy_args(f"sqlite:///{tmp_path / 'a.db'}", policy, "--check")],
        env=environ(tmp_path / "effects.txt"), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert rows["get_weather"].split()[1] == "read"
    assert rows["create_ticket"].split()[1] == "mutate-external"
    assert rows["delete_repo"].split()[1] == "irreversible" and "never_main" in rows["delete_repo"]
    assert "irreversible-without-rule" in rows["wipe_disk"]
    assert "readOnlyHint ignored" in rows["wipe_disk"]
    assert effects(tmp_path / "effects.txt") == []


OBJECT = {"type": "object"}
#: Tool names and descriptions that would drive a terminal printed raw: an OSC 52 clipboard
#: write, a screen clear, a newline that forges a row, a C1 control sequence introducer.
HOSTILE = [
    {"name": "\x1b]52;c;cHduZWQ=\x07copy", "description": "\x1b[2J", "inputSchema": OBJECT},
    {"name": "two\nwipe_disk  read", "inputSchema": OBJECT},
    {"name": "c1\x9b31mred", "description": "\x9d0;title\x9c", "inputSchema": OBJECT},
]


def test_check_shows_hostile_tool_names_as_visible_text(tmp_path: Path) -> None:
    policy = tmp_path / "policy.py"
    write_policy(policy, 'effects = {"two*": "read"}\n')
    args = proxy_args(
        f"sqlite:///{tmp_path / 'a.db'}", policy, "--check", upstream=listed(tmp_path, HOSTILE)
    )
    done = subprocess.run(
        [PY, *args], env=environ(tmp_path / "effects.txt"), capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 + len(HOSTILE)  # no row forged by a newline
    for line in [*lines, *done.stderr.splitlines()]:
        assert not any(c < " " or "\x7f" <= c <= "\x9f" for c in line), repr(line)
    assert [line.split()[0] for line in lines[1:]] == [
        "\\x1b]52;c;cHduZWQ=\\x07copy",
        "two\\x0awipe_disk",
        "c1\\x9b31mred",
    ]
    assert lines[2].split()[2:4] == ["read", "policy"]


def test_without_the_mcp_sdk_the_command_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "from dar.cli.main import main\n"
        "sys.exit(main(['mcp-proxy', '--check', '--', 'server']))\n"
    )
    done = subprocess.run(
        [PY, "-c", code], env=environ(tmp_path / "effects.txt"), capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "dar mcp-proxy: error: this integration needs mcp: pip install mcp (or install "
        "durable-agent-runtime with its [mcp] extra: pip install '.[mcp]' in a checkout)\n"
    )


def test_readme_policy_example_loads() -> None:
    policy = load_policy(ROOT / "examples" / "mcp_policy.py")
    assert policy.rules and policy.effects


# --- streamable HTTP, both sides ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_http_upstream_and_http_clients_at_once(tmp_path: Path) -> None:
    """An upstream on streamable HTTP, the proxy serving streamable HTTP, two agents sending
    the same call at the same moment: the upstream acts once, and the log tells the two
    agents' sessions apart."""
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"
    up_port, proxy_port = free_port(), free_port()
    with (tmp_path / "up.err").open("w") as up_err, (tmp_path / "proxy.err").open("w") as err:
        upstream = subprocess.Popen(
            [PY, str(SERVER), "http", str(up_port)], env=environ(eff), stderr=up_err
        )
        proxy: subprocess.Popen[bytes] | None = None
        try:
            # The proxy connects to its upstream as it starts: start it once the upstream
            # listens (a loaded machine once started the proxy first, and it exited).
            wait_for_port(up_port, upstream)
            proxy = subprocess.Popen(
                [PY, "-m", "dar", "mcp-proxy", "--db", db, "--http", f"127.0.0.1:{proxy_port}",
                 "--upstream-url", f"http://127.0.0.1:{up_port}/mcp"],
                env=environ(eff), stderr=err,
            )  # fmt: skip
            wait_for_port(proxy_port, proxy)
            results = two_http_agents(f"http://127.0.0.1:{proxy_port}/mcp")
        finally:
            if proxy is not None:
                stop(proxy)
            stop(upstream)
    assert effects(eff) == ["create_ticket same"]
    assert sorted(status(r) for r in results) == ["cached", "executed"]
    with Runtime(db) as rt:
        done = [e for e in rt.events(tool="create_ticket") if e.status in ("executed", "cached")]
        assert len({e.correlation_id for e in done}) == 2


def two_http_agents(url: str) -> list[CallToolResult]:
    from mcp.client.streamable_http import streamable_http_client

    results: list[CallToolResult] = []

    async def agent(ready: anyio.Event, go: anyio.Event) -> None:
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = {t.name for t in (await session.list_tools()).tools}
            assert "create_ticket" in listed
            ready.set()
            await go.wait()
            results.append(await session.call_tool("create_ticket", {"title": "same"}))

    async def main() -> None:
        readies = [anyio.Event(), anyio.Event()]
        go = anyio.Event()
        async with anyio.create_task_group() as tg:
            for ready in readies:
                tg.start_soon(agent, ready, go)
            for ready in readies:
                await ready.wait()
            go.set()

    run(main)
    return results


def test_an_upstream_tool_no_log_can_store_is_left_out_and_the_others_served(
    tmp_path: Path,
) -> None:
    # One tool name with a NUL in the upstream's listing once took every tool down.
    hostile = ROOT / "tests" / "support" / "mcp_servers" / "hostile_listing_server.py"
    args = ["-m", "dar", "mcp-proxy", "--db", f"sqlite:///{tmp_path / 'p.db'}", "--", PY]
    params = StdioServerParameters(
        command=PY, args=[*args, str(hostile)], env=environ(tmp_path / "effects.txt")
    )

    async def main() -> None:
        with (tmp_path / "proxy.err").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as agent,
            ):
                await agent.initialize()
                listed = [t.name for t in (await agent.list_tools()).tools]
                assert listed == ["lookup"]
                answer = await agent.call_tool("lookup", {"order_id": "A1"})
                assert status(answer) == "rejected"  # irreversible with no rule: refused, logged

    run(main)
    said = (tmp_path / "proxy.err").read_text()
    assert "upstream tool left out: tool name 'wipe\\x00everything'" in said
