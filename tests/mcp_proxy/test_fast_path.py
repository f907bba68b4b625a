"""The proxy's fast path for ``tools/call`` on stdio answers what the SDK's path answers, byte
for byte: the same JSON-RPC lines are written to two proxies, one with ``--sdk-path``, and
each reads the raw lines back (no client library in between to smooth a difference over);
and the answers it builds without the SDK's models are the bytes those models give."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from mcp_types import CallToolResult
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from dar import Runtime
from dar.effects import Status
from dar.mcp_proxy.server import plain_reply, reply
from dar.mcp_proxy.upstream import plain_line, plain_record, recorded
from dar.mcp_proxy.wire import response_line
from dar.records import Result
from tests.mcp_proxy.test_proxy import LIMIT, PY, SERVER, effects, environ

INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
#: A result far above the pipe's buffer and asyncio's default line limit (64 KiB).
LARGE = "x" * 300_000 + "é"


class RawAgent:
    """An agent writing and reading JSON-RPC lines to a proxy process, as they are."""

    def __init__(self, tmp: Path, name: str, *extra: str, upstream: Path = SERVER) -> None:
        self.db = f"sqlite:///{tmp / f'{name}.db'}"
        self.effects = tmp / f"{name}.effects"
        env = {**environ(self.effects), "PYTHONHASHSEED": "0"}  # the upstream's ticket ids
        args = ["-m", "dar", "mcp-proxy", "--db", self.db, *extra, "--", PY, str(upstream)]
        self.err = (tmp / f"{name}.err").open("w")
        self.proc = subprocess.Popen(
            [PY, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, env=env
        )
        self.send(INIT)
        self.read()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def read(self) -> bytes:
        """The next line the proxy writes (failing after LIMIT seconds of silence)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], LIMIT)
        assert ready, "the proxy did not answer"
        return self.proc.stdout.readline()

    def call(self, rid: int | str, name: str, arguments: Any, meta: Any = None) -> bytes:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta is not None:
            params["_meta"] = meta
        self.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
        return self.read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=LIMIT)
        self.err.close()


def conversation(agent: RawAgent) -> list[bytes]:
    """Executed, cached, refused, invalid-arguments, upstream-error, large and unusual calls."""
    return [
        agent.call(1, "create_ticket", {"title": "printer"}),
        agent.call(2, "create_ticket", {"title": "printer"}),
        agent.call(3, "create_ticket", {"title": "named"}, {"dar/correlation_id": "conv-7"}),
        agent.call(4, "wipe_disk", {"path": "/"}),
        agent.call(5, "charge", {"amount": "lots"}),
        agent.call(6, "charge", [1, 2]),
        agent.call(7, "flaky", {"x": 1}),
        agent.call(8, "nope", {}),
        agent.call(9, "post_note", {"text": LARGE}),
        agent.call("ten", "post_note", {"text": LARGE}),
        agent.call(11, "charge", None),
    ]


def test_fast_path_answers_the_bytes_the_sdk_path_answers(tmp_path: Path) -> None:
    fast, sdk = RawAgent(tmp_path, "fast"), RawAgent(tmp_path, "sdk", "--sdk-path")
    try:
        said = {name: conversation(agent) for name, agent in (("fast", fast), ("sdk", sdk))}
    finally:
        fast.close()
        sdk.close()
    assert said["fast"] == said["sdk"]
    answers = [json.loads(line) for line in said["fast"]]
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5, 6, 7, 8, 9, "ten", 11]
    statuses = [a["result"]["_meta"]["dar/status"] if "result" in a else None for a in answers]
    assert statuses == [
        "executed", "cached", "executed", "rejected", "rejected", None, "failed", "rejected",
        "executed", "cached", "rejected",
    ]  # fmt: skip
    assert answers[5]["error"]["code"] == -32602  # not an object: the SDK's own error
    assert answers[8]["result"]["content"][0]["text"] == f"posted {LARGE}"
    assert effects(fast.effects) == effects(sdk.effects)
    for agent in (fast, sdk):
        with Runtime(agent.db) as rt:
            assert {e.correlation_id for e in rt.events(tool="create_ticket")} >= {"conv-7"}


#: The serving loop of the upstream servers below: a few lines of JSON-RPC, no SDK. Each
#: server's own lines first define ``NAME``, ``TOOLS`` and ``call(params)`` (the members a
#: ``tools/call`` answer adds: a ``result`` or an ``error``).
SERVE = """
import json, sys
for line in sys.stdin:
    asked = json.loads(line)
    if "id" not in asked:
        continue
    method, answer = asked["method"], {"jsonrpc": "2.0", "id": asked["id"]}
    if method == "initialize":
        answer["result"] = {
            "protocolVersion": asked["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": NAME, "version": "1"},
        }
    elif method == "tools/list":
        answer["result"] = {"tools": TOOLS}
    else:
        answer.update(call(asked["params"]))
    print(json.dumps(answer), flush=True)
"""

#: An upstream whose one tool always answers a JSON-RPC error, as a server may for
#: arguments it rejects.
ERRING = (
    """
NAME = "erring"
TOOLS = [{"name": "erring", "inputSchema": {"type": "object"},
          "annotations": {"destructiveHint": False}}]
call = lambda params: {"error": {"code": -32602, "message": "erring refuses",
                                 "data": {"at": "$.x"}}}
"""
    + SERVE
)


def test_an_upstream_json_rpc_error_is_answered_alike(tmp_path: Path) -> None:
    """A ``tools/call`` the upstream answers with a JSON-RPC error (not an ``isError``
    result) fails the call, in the same bytes on both paths, and is logged as failed."""
    upstream = tmp_path / "erring.py"
    upstream.write_text(ERRING)
    agents = [RawAgent(tmp_path, name, *extra, upstream=upstream)
              for name, extra in (("fast", ()), ("sdk", ("--sdk-path",)))]  # fmt: skip
    try:
        said = [agent.call(1, "erring", {"x": 1}) for agent in agents]
    finally:
        for agent in agents:
            agent.close()
    assert said[0] == said[1]
    answer = json.loads(said[0])["result"]
    assert answer["isError"] is True and answer["_meta"]["dar/status"] == "failed"
    assert "erring refuses" in answer["content"][0]["text"]
    with Runtime(agents[0].db) as rt:
        assert [e.status for e in rt.events(tool="erring")] == ["started", "failed"]


#: An upstream whose tools answer results of every shape: the usual ones, and those the
#: SDK's models must read (or its session refuse).
SHAPED = (
    """
NAME = "shaped"
schema = {"type": "object", "required": ["a"]}
text = lambda t, **more: {"type": "text", "text": t, **more}
results = {
    "fits": {"content": [text('{"a": 1}')], "structuredContent": {"a": 1}, "isError": False},
    "misfit": {"content": [text('{"b": 2}')], "structuredContent": {"b": 2}},
    "unstructured": {"content": [text('{"a": 3}')]},
    "blocks": {"content": [text("t", annotations={"priority": 1}),
                           {"type": "image", "data": "AAAA", "mimeType": "image/png"}]},
    "meta": {"content": [text("m")], "_meta": {"upstream/said": 1}},
    "error": {"content": [text("it broke")], "isError": True},
    "nonfinite": {"content": [text("n")], "structuredContent": {"a": float("nan"), "b": 1e999}},
}
TOOLS = [{"name": name, "inputSchema": {"type": "object"},
          "annotations": {"destructiveHint": False}} for name in results]
for tool in TOOLS[:3]:
    tool["outputSchema"] = schema
call = lambda params: {"result": results[params["name"]]}
"""
    + SERVE
)


def test_results_of_every_shape_are_answered_alike(tmp_path: Path) -> None:
    """The upstream's usual results, and those the SDK's models read or its session refuses
    (structured content that does not fit the ``outputSchema``, or is missing; other blocks,
    annotations, a ``_meta``; an error; NaN and Infinity, which JSON has not), executed and
    then from the record: the same bytes on both paths."""
    upstream = tmp_path / "shaped.py"
    upstream.write_text(SHAPED)
    agents = [RawAgent(tmp_path, name, *extra, upstream=upstream)
              for name, extra in (("fast", ()), ("sdk", ("--sdk-path",)))]  # fmt: skip
    tools = ["fits", "misfit", "unstructured", "blocks", "meta", "error", "nonfinite"]
    try:
        said = [[agent.call(i, tool, {}) for i, tool in enumerate(tools * 2)] for agent in agents]
    finally:
        for agent in agents:
            agent.close()
    assert said[0] == said[1]
    statuses = [json.loads(line)["result"]["_meta"]["dar/status"] for line in said[0]]
    first = ["executed", "failed", "failed", "executed", "executed", "failed", "executed"]
    assert statuses == [*first, *(s.replace("executed", "cached") for s in first)]


def cancel_mid_call(agent: RawAgent) -> tuple[list[bytes], list[str]]:
    """Cancel a call while the upstream acts; then a ping and the same call again. What the
    agent read, and the log's statuses for that call."""
    try:
        params = {"name": "charge", "arguments": {"amount": 5, "wait": 1}}
        agent.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
        deadline = time.monotonic() + LIMIT
        while "charge 5" not in effects(agent.effects):
            assert time.monotonic() < deadline, "the upstream never acted"
            time.sleep(0.02)
        cancel = {"requestId": 1, "reason": "the user pressed stop"}
        agent.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
        agent.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        read = [agent.read()]  # the ping's answer, and none for the cancelled call
        read.append(agent.call(3, "charge", {"amount": 5, "wait": 1}))
    finally:
        agent.close()
    with Runtime(agent.db) as rt:
        logged = [e.status for e in rt.events(tool="charge")]
    return read, logged


def test_a_call_cancelled_mid_call_is_never_answered_and_is_logged_alike(tmp_path: Path) -> None:
    agents = RawAgent(tmp_path, "fast"), RawAgent(tmp_path, "sdk", "--sdk-path")
    fast, sdk = (cancel_mid_call(agent) for agent in agents)
    assert fast == sdk
    read, logged = fast
    assert json.loads(read[0]) == {"jsonrpc": "2.0", "id": 2, "result": {}}
    again = json.loads(read[1])["result"]
    assert again["_meta"]["dar/status"] == "indeterminate" and again["isError"] is True
    assert logged[:3] == ["started", "cancelled", "indeterminate"]


def charge_and_wait_for_the_effect(agent: RawAgent, amount: int, wait: float) -> None:
    """Send a charge that takes ``wait`` seconds, and return once the upstream has acted."""
    params = {"name": "charge", "arguments": {"amount": amount, "wait": wait}}
    agent.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    deadline = time.monotonic() + LIMIT
    while f"charge {amount}" not in effects(agent.effects):
        assert time.monotonic() < deadline, "the upstream never acted"
        time.sleep(0.02)


def test_a_call_in_flight_when_the_agent_hangs_up_is_finished_and_recorded(
    tmp_path: Path,
) -> None:
    """Stdin closed (the agent quit) while the upstream acts: the effect happened, so the
    call runs to its end and its outcome is in the log; the answer is still written."""
    agent = RawAgent(tmp_path, "fast")
    charge_and_wait_for_the_effect(agent, 4, 0.3)
    agent.close()
    with Runtime(agent.db) as rt:
        assert [e.status for e in rt.events(tool="charge")] == ["started", "executed"]


def test_a_call_in_flight_when_the_proxy_is_stopped_is_recorded_as_cancelled(
    tmp_path: Path,
) -> None:
    """Ctrl-C while the upstream acts: the proxy cancels the call, which records it (an
    external effect's key is then for an operator to resolve), answers nothing, and exits."""
    agent = RawAgent(tmp_path, "fast")
    charge_and_wait_for_the_effect(agent, 6, 1)
    agent.proc.send_signal(signal.SIGINT)
    assert agent.proc.wait(timeout=LIMIT) != 0
    assert agent.proc.stdout is not None and agent.proc.stdout.read() == b""
    agent.err.close()
    with Runtime(agent.db) as rt:
        assert [e.status for e in rt.events(tool="charge")] == ["started", "cancelled"]


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (exited, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def test_an_upstream_that_outlives_its_closed_stdin_is_killed_when_the_proxy_exits(
    tmp_path: Path,
) -> None:
    """The fast path runs the upstream's process itself: when the agent hangs up, the
    upstream's stdin is closed, and a process group still there after the grace period,
    even one that ignores SIGTERM, is killed; no part of the upstream outlives the proxy."""
    pids = tmp_path / "pids"
    script = f'trap "" TERM; {PY} {SERVER}; sleep 60 & echo $$ $! > {pids}; wait'
    args = ["-m", "dar", "mcp-proxy", "--db", f"sqlite:///{tmp_path / 'db'}", "--"]
    proc = subprocess.Popen(
        [PY, *args, "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=environ(tmp_path / "effects"),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INIT).encode() + b"\n")
    proc.stdin.flush()
    assert b'"protocolVersion"' in proc.stdout.readline()
    proc.stdin.close()
    assert proc.wait(timeout=LIMIT) == 0
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    assert gone(shell) and gone(sleeper)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXT = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)})
#: Content blocks: mostly plain text, and the shapes that must go the models' way.
BLOCK = TEXT | st.one_of(
    st.builds(lambda b: {**b, "annotations": {"priority": 0.5}}, TEXT),
    st.builds(lambda b: {**b, "_meta": {"x": 1}}, TEXT),
    st.just({"type": "image", "data": "AAAA", "mimeType": "image/png"}),
    st.just({"text": "no type"}),
)
OBJECT = st.dictionaries(st.text(max_size=4), JSON, max_size=4)
#: A record as `recorded` writes the usual result: text, maybe structured content.
USUAL = st.fixed_dictionaries(
    {"content": st.lists(TEXT, max_size=3)}, optional={"structuredContent": OBJECT}
)
#: Any other record: other blocks and members, a record an operator wrote.
UNUSUAL = st.fixed_dictionaries(
    {"content": st.lists(BLOCK, max_size=3)},
    optional={
        "structuredContent": st.none() | OBJECT | JSON,
        "_meta": st.just({"upstream": 1}),
        "isError": st.booleans(),
    },
)
SCHEMAS = st.sampled_from(
    [None, {"type": "object"}, {"type": "object", "required": ["a"]}, {"type": "array"}]
)


@given(
    output=USUAL | UNUSUAL | JSON,
    status=st.sampled_from([Status.EXECUTED, Status.CACHED, Status.FAILED]),
    key=st.none() | st.text(max_size=4),
    schema=SCHEMAS,
    checked=st.booleans(),
)
def test_an_answer_built_without_the_models_is_the_bytes_the_models_give(
    output: Any, status: Status, key: str | None, schema: dict[str, Any] | None, checked: bool
) -> None:
    result = Result(status=status, output=output, key=key)
    plain = plain_reply(result, schema, checked=checked)
    if plain is None:
        return  # answered through the models
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        modeled = reply(result, None, schema, checked=checked)
        assert response_line("r", plain, version) == response_line("r", modeled, version)


def test_the_usual_answers_are_built_without_the_models() -> None:
    """Text content, with structured content that fits the tool's ``outputSchema`` (just
    checked, or from the record): the answer every executed and cached call of a well
    behaved upstream gets."""
    text = [{"type": "text", "text": "done"}]
    schema = {"type": "object", "required": ["a"]}
    for output, on_schema, checked in [
        ({"content": text}, None, False),
        ({"content": text, "structuredContent": {"a": 1}}, None, False),
        ({"content": text, "structuredContent": {"a": 1}}, schema, True),
        ({"content": text, "structuredContent": {"a": 1}}, schema, False),
    ]:
        for status in (Status.EXECUTED, Status.CACHED):
            result = Result(status=status, output=output, key="k")
            assert plain_reply(result, on_schema, checked=checked) is not None
    unfit = Result(status=Status.CACHED, output={"content": text, "structuredContent": {}}, key="k")
    assert plain_reply(unfit, schema, checked=False) is None  # an error says why it does not fit


@given(result=USUAL | UNUSUAL | JSON)
def test_a_result_read_without_the_models_is_recorded_as_the_models_record_it(result: Any) -> None:
    plain = plain_record(result, lambda structured: True)
    if plain is not None and plain_line(json.dumps(result).encode()):
        modeled = recorded(CallToolResult.model_validate(result, by_name=False))
        assert json.dumps(plain) == json.dumps(modeled)  # members in the same order too
