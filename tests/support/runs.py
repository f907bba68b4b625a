"""Durable runs in the tests: a support agent on the real OpenAI client, its tools, and the
worker processes that run it, kill themselves at a chosen point, and resume it.

The agent refunds an order: the model (a `ConversationServer`) looks the order up, asks
for a refund the rules refuse, a smaller one that runs, checks it, e-mails the customer
and answers. Inside a run every model turn, tool call and `dar.step` is a journaled step.
Effects write one line per execution to a file in the marks folder, so they are counted
across processes; their `reconcile` reads that file, as a real API is asked by key.

A worker process is told where to die (``kill``):

- ``start``: the run's row is written, no step yet;
- ``step:K``: step K's journal row is written (the boundary between step K and K+1);
- ``unjournaled:K``: step K ran and the run's row moved on, its journal row is not written;
- ``model:J``: this process's J-th model request reached the server, its answer did not
  reach the agent (in the middle of the request);
- ``handler:NAME``: inside tool NAME's handler, after its effect.

Small agents below (`greet`, `gated`, `late`, `nested`, `opaque`, ...) pin the edge
cases, each in a blocking and an async form (`small(name, kind)`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx2
import openai
from openai.types.chat import ChatCompletion

import dar
from dar import AsyncRuntime, Effect, NeedsApproval, Reconciled, Runtime, Tool, rule, tool
from dar.core.ops import Append, SaveRun
from dar.demo.scripted_model import ModelServer, Request, ToolCall, Turn
from dar.integrations import openai as dar_openai
from dar.records import Event
from dar.runtime.journal import ajournaled, journaled
from tests.support.runtimes import make as make_runtime

# --- the model -----------------------------------------------------------------------------

#: The session's id stands for itself in the script (the order is ORD-<session>).
SESSION = "{session}"

REFUND: list[Turn] = [
    [ToolCall("lookup_order", '{"order_id": "ORD-{session}"}')],
    [ToolCall("refund", '{"order_id": "ORD-{session}", "amount": 5000}')],  # refused by a rule
    [ToolCall("refund", '{"order_id": "ORD-{session}", "amount": 50}')],
    [ToolCall("refund_status", '{"order_id": "ORD-{session}"}')],
    [ToolCall("send_email", '{"to": "ana@example.com", "text": "ORD-{session}: refunded 50"}')],
    "Refunded 50 on ORD-{session} and told the customer.",
]
#: The steps of `REFUND` as journaled: the ticket, then a model turn and a tool call per
#: tool turn, and the last model turn.
REFUND_STEPS = 1 + 2 * (len(REFUND) - 1) + 1

APPROVAL: list[Turn] = [
    [ToolCall("refund", '{"order_id": "ORD-{session}", "amount": 300}')],  # needs a person
    "Done with ORD-{session}.",
]

#: Two reads in one turn, the first slow: an async run records the second one first.
GAP: list[Turn] = [
    [
        ToolCall("slow_read", '{"order_id": "ORD-{session}"}'),
        ToolCall("quick_read", '{"order_id": "ORD-{session}"}'),
    ],
    [ToolCall("lookup_order", '{"order_id": "ORD-{session}"}')],
    "Read ORD-{session} three times.",
]

#: Two tool calls in one model turn: the async integration runs them concurrently.
PARALLEL: list[Turn] = [
    [
        ToolCall("lookup_order", '{"order_id": "ORD-{session}"}'),
        ToolCall("refund_status", '{"order_id": "ORD-{session}"}'),
    ],
    "Looked twice at ORD-{session}.",
]


class ConversationServer(ModelServer):
    """A `ModelServer` that answers a request by its place in its own conversation (the
    number of assistant messages it carries), in the words of its session (the request's
    ``user``): a request asked again gets the same answer, and conversations in parallel
    do not share a script position."""

    def __enter__(self) -> ConversationServer:
        super().__enter__()
        return self

    def take(self, path: str, body: dict[str, Any]) -> tuple[int, Turn]:
        with self._lock:
            self.requests.append(Request(path, body))
        number = sum(1 for m in body.get("messages", ()) if m.get("role") == "assistant")
        session = str(body.get("user", ""))
        turn = self.script[number % len(self.script)]
        if isinstance(turn, str):
            return number, turn.replace(SESSION, session)
        return number, [ToolCall(c.name, c.arguments.replace(SESSION, session)) for c in turn]

    def of(self, session: str) -> list[dict[str, Any]]:
        """The bodies of one session's requests, in the order they arrived."""
        return [r.body for r in self.requests if r.body.get("user") == session]


TICKET = re.compile(r"T-[0-9a-f]{12}")


def same_conversation(bodies: Sequence[dict[str, Any]], session: str) -> list[str]:
    """Request bodies with what is the session's own (its id, its ticket) replaced, so two
    sessions' conversations compare equal when they said the same things."""
    out = []
    for body in bodies:
        text = json.dumps(body, sort_keys=True).replace(session, "S")
        for ticket in TICKET.findall(text):
            text = text.replace(ticket, "T-ticket")
        out.append(text)
    return out


# --- the tools ------------------------------------------------------------------------------

#: Set in each process by `configure` (the marks folder, and where to die).
MARKS: Path = Path(os.environ.get("DAR_TEST_MARKS", "/tmp/dar-test-marks"))
KILL: str | None = None
#: The agent's code as of this process: ``None``, or ``"notify-first"`` (a later version
#: that e-mails the customer before asking the model anything).
VARIANT: str | None = None


def configure(marks: str | Path, kill: str | None = None, variant: str | None = None) -> None:
    global MARKS, KILL, VARIANT
    MARKS, KILL, VARIANT = Path(marks), kill, variant


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def mark(name: str, text: str = "") -> None:
    """One line per execution, appended (counted across processes)."""
    with open(MARKS / name, "a") as f:
        f.write(f"{os.getpid()} {text}\n")


def count(marks: Path, name: str) -> int:
    path = marks / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def marks_of(marks: Path, prefix: str) -> dict[str, int]:
    """Every marks file whose name starts with ``prefix``, with its count."""
    return {p.name: count(marks, p.name) for p in sorted(marks.glob(f"{prefix}*"))}


@tool(effect=Effect.READ)
def lookup_order(order_id: str) -> dict[str, Any]:
    """The order, its total and its customer."""
    mark(f"read.lookup_order.{order_id}")
    return {"order_id": order_id, "total": 120, "customer": "ana@example.com"}


@tool(effect=Effect.READ)
def refund_status(order_id: str) -> dict[str, Any]:
    """How much was refunded on the order."""
    mark(f"read.refund_status.{order_id}")
    done = sorted(p.name for p in MARKS.glob(f"effect.refund.{order_id}.*"))
    return {"order_id": order_id, "refunds": [int(n.rsplit(".", 1)[1]) for n in done]}


def _refund_done(inp: dict[str, Any]) -> Reconciled:
    name = f"effect.refund.{inp['order_id']}.{inp['amount']}"
    return Reconciled(True, _refunded(inp)) if count(MARKS, name) else Reconciled(False)


def _refunded(inp: dict[str, Any]) -> dict[str, Any]:
    return {"refunded": inp["amount"], "order_id": inp["order_id"]}


@tool(effect=Effect.MUTATE_EXTERNAL, lease=5, reconcile=_refund_done)
def refund(order_id: str, amount: int) -> dict[str, Any]:
    """Refund ``amount`` on the order."""
    mark(f"effect.refund.{order_id}.{amount}")
    if KILL == "handler:refund" and amount < 100:
        die()
    return _refunded({"order_id": order_id, "amount": amount})


def _email_done(inp: dict[str, Any]) -> Reconciled:
    found = count(MARKS, f"effect.send_email.{_email_name(inp['text'])}")
    return Reconciled(True, {"sent": True}) if found else Reconciled(False)


def _email_name(text: str) -> str:
    return text.split(":")[0]


@tool(effect=Effect.MUTATE_EXTERNAL, lease=5, reconcile=_email_done)
def send_email(to: str, text: str) -> dict[str, Any]:
    """E-mail the customer."""
    mark(f"effect.send_email.{_email_name(text)}", text)
    if KILL == "handler:send_email":
        die()
    return {"sent": True}


@rule(applies_to="refund", name="refund_limit")
def refund_limit(inp: dict[str, Any], ctx: Any) -> Any:
    if inp["amount"] > 1000:
        return dar.Deny("refunds over 1000 are refused: a manager must do it")
    if inp["amount"] > 100:
        return NeedsApproval("refunds over 100 need a person")
    return True


TOOLS: list[Tool[Any]] = [lookup_order, refund_status, refund, send_email]


@tool(effect=Effect.READ)
async def slow_read(order_id: str) -> dict[str, Any]:
    """A read that takes its time (an async runtime runs it beside `quick_read`)."""
    mark(f"read.slow_read.{order_id}")
    await asyncio.sleep(0.5)
    return {"order_id": order_id, "slow": True}


@tool(effect=Effect.READ)
async def quick_read(order_id: str) -> dict[str, Any]:
    """A read that answers at once."""
    mark(f"read.quick_read.{order_id}")
    return {"order_id": order_id, "reads": count(MARKS, f"read.quick_read.{order_id}")}


#: Tools only an `AsyncRuntime` has (their handlers are coroutine functions).
ASYNC_TOOLS: list[Tool[Any]] = [slow_read, quick_read]


# --- the agent -----------------------------------------------------------------------------

#: The runtime the agents' tool calls go through, as an application keeps one at module
#: level (set by whoever builds it: a worker, or the test).
RUNTIME: Any = None
#: Model requests this process sent; the count a ``model:J`` kill compares with.
SENT = [0]


def _counted(response: httpx2.Response) -> None:
    n = SENT[0]
    SENT[0] += 1
    if f"model:{n}" == KILL:
        die()  # the server has the request; its answer never reaches the agent


async def _acounted(response: httpx2.Response) -> None:
    _counted(response)


def encode(completion: Any) -> tuple[Any, int]:
    usage = completion.usage
    return completion.model_dump(mode="json"), usage.total_tokens if usage else 0


def _opening(ticket: str, session: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": f"You are the support desk. Ticket {ticket}."},
        {"role": "user", "content": f"Please refund my order ORD-{session}."},
    ]


def _turn(completion: ChatCompletion) -> dict[str, Any]:
    return completion.choices[0].message.model_dump(mode="json", exclude_none=True)


def new_ticket() -> str:
    return f"T-{uuid.uuid4().hex[:12]}"


@dar.agent
def support(model_url: str, session: str) -> str | None:
    """The support agent: the OpenAI chat loop, every model turn journaled by hand."""
    rt: Runtime = RUNTIME
    client = openai.OpenAI(
        base_url=f"{model_url}/v1",
        api_key="test",
        max_retries=0,
        http_client=httpx2.Client(event_hooks={"response": [_counted]}),
    )
    ticket = dar.step("ticket", new_ticket)
    if VARIANT == "notify-first":
        rt.call("send_email", {"to": "ana@example.com", "text": f"ORD-{session}: on it"})
    tools = dar_openai.tools(rt, api="chat")
    messages: list[Any] = _opening(ticket, session)
    while True:
        request = {"model": "test-model", "messages": messages, "tools": tools, "user": session}
        completion: ChatCompletion = journaled(
            "model",
            "openai.chat",
            request,
            lambda r=request: client.chat.completions.create(**r),  # type: ignore[misc]
            encode,
            ChatCompletion.model_validate,
        )
        replies = dar_openai.run_tool_calls(rt, completion)
        if not replies:
            return completion.choices[0].message.content
        messages = [*messages, _turn(completion), *replies]


@dar.agent
async def asupport(model_url: str, session: str) -> str | None:
    """`support` on an `AsyncRuntime`, with the async client."""
    art: AsyncRuntime = RUNTIME
    client = openai.AsyncOpenAI(
        base_url=f"{model_url}/v1",
        api_key="test",
        max_retries=0,
        http_client=httpx2.AsyncClient(event_hooks={"response": [_acounted]}),
    )
    ticket = await cast(Any, dar.step("ticket", new_ticket))
    if VARIANT == "notify-first":
        await art.call("send_email", {"to": "ana@example.com", "text": f"ORD-{session}: on it"})
    tools = dar_openai.tools(art, api="chat")
    messages: list[Any] = _opening(ticket, session)
    while True:
        request = {"model": "test-model", "messages": messages, "tools": tools, "user": session}
        completion: ChatCompletion = await ajournaled(
            "model",
            "openai.chat",
            request,
            lambda r=request: client.chat.completions.create(**r),  # type: ignore[misc]
            encode,
            ChatCompletion.model_validate,
        )
        replies = await dar_openai.arun_tool_calls(art, completion)
        if not replies:
            return completion.choices[0].message.content
        messages = [*messages, _turn(completion), *replies]


def agent_for(kind: str) -> Callable[..., Any]:
    return support if kind == "sync" else asupport


# --- small agents for the edge cases ----------------------------------------------------------

#: How often each small agent's body ran in this process, by argument.
CALLED: Counter[str] = Counter()
#: Gates a `gated` run waits at, by name.
GATES: dict[str, threading.Event] = {}


@dar.agent
def greet(name: str) -> str:
    CALLED[name] += 1
    dar.step("stamp", time.time)
    return f"hello {name}"


@dar.agent
async def agreet(name: str) -> str:
    CALLED[name] += 1
    await cast(Any, dar.step("stamp", time.time))
    return f"hello {name}"


@dar.agent
def gated(gate: str) -> str:
    CALLED[gate] += 1
    dar.step("gate", lambda: GATES[gate].wait(30))
    return "through"


@dar.agent
async def agated(gate: str) -> str:
    CALLED[gate] += 1
    await cast(Any, dar.step("gate", lambda: asyncio.to_thread(GATES[gate].wait, 30)))
    return "through"


@dar.agent
def late(gate: str) -> str:
    """Slow code after its last step: its worker's lease may run out before it returns."""
    CALLED[gate] += 1
    dar.step("first", int)
    GATES[gate].wait(30)
    return "late"


@dar.agent
async def alate(gate: str) -> str:
    CALLED[gate] += 1
    await cast(Any, dar.step("first", int))
    await asyncio.to_thread(GATES[gate].wait, 30)
    return "late"


@tool(effect=Effect.READ)
def stamped(order_id: str) -> dict[str, Any]:
    """A tool whose handler journals a value: inside a tool call it is the call's own."""
    return {"order_id": order_id, "at": dar.step("stamp", time.time)}


@dar.agent
def nested(gate: str) -> str:
    """A tool call whose handler uses `dar.step`, a step, then slow code."""
    CALLED[gate] += 1
    RUNTIME.call("stamped", {"order_id": "ORD-n"})
    dar.step("after", int)
    GATES[gate].wait(30)
    return "nested"


@dar.agent
async def anested(gate: str) -> str:
    CALLED[gate] += 1
    await RUNTIME.call("stamped", {"order_id": "ORD-n"})
    await cast(Any, dar.step("after", int))
    await asyncio.to_thread(GATES[gate].wait, 30)
    return "nested"


@dar.agent
def opaque(catch: bool) -> str:
    """Journals a value with no JSON form: the agent sees a TypeError."""
    try:
        dar.step("opaque", object)
    except TypeError as exc:
        if not catch:
            raise
        return f"refused: {exc}"
    return "journaled"


@dar.agent
async def aopaque(catch: bool) -> str:
    try:
        await cast(Any, dar.step("opaque", object))
    except TypeError as exc:
        if not catch:
            raise
        return f"refused: {exc}"
    return "journaled"


@dar.agent
def returns_opaque() -> Any:
    return object()


@dar.agent
async def areturns_opaque() -> Any:
    return object()


CARD = "4111-1111-1111-1111"


@tool(effect=Effect.MUTATE_LOCAL, redact=["card"])
def charge(card: str, amount: int) -> dict[str, Any]:
    """Charge a card (its number is personal: the log keeps a salted hash)."""
    return {"charged": amount}


@dar.agent
def pays(amount: int) -> str:
    return str(RUNTIME.call("charge", {"card": CARD, "amount": amount}).status.value)


@dar.agent
async def apays(amount: int) -> str:
    return str((await RUNTIME.call("charge", {"card": CARD, "amount": amount})).status.value)


def undeclared(name: str) -> str:
    return name


SMALL: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "greet": (greet, agreet),
    "gated": (gated, agated),
    "late": (late, alate),
    "nested": (nested, anested),
    "opaque": (opaque, aopaque),
    "returns_opaque": (returns_opaque, areturns_opaque),
    "pays": (pays, apays),
}


def small(name: str, kind: str) -> Callable[..., Any]:
    """The small agent ``name`` for a runtime of ``kind``."""
    sync, async_ = SMALL[name]
    return sync if kind == "sync" else async_


# --- runtimes and workers -----------------------------------------------------------------------


def build(url: str, kind: str, clock: Callable[[], float] = time.time, **kwargs: Any) -> Any:
    """A runtime of ``kind`` with the agent's tools and rules, installed as `RUNTIME`
    (for an async one, the `AsyncRuntime` inside the blocking wrapper)."""
    tools = TOOLS if kind == "sync" else [*TOOLS, *ASYNC_TOOLS]
    rt = make_runtime(kind, url, tools=tools, rules=[refund_limit], clock=clock, **kwargs)
    install(rt)
    return rt


def install(rt: Any) -> None:
    """Make ``rt`` the runtime the agents call tools through."""
    global RUNTIME
    RUNTIME = getattr(rt, "art", rt)


def hook_kills(rt: Any) -> None:
    """Make the store kill this process at the store-side points of `KILL`."""
    store = rt.store
    save_run, append = store.save_run, store.append

    def saving(op: SaveRun) -> bool:
        done: bool = save_run(op)
        run = op.run
        if done and KILL == "start" and op.expect_version is None:
            die()
        if done and f"unjournaled:{run.steps - 1}" == KILL and op.expect_version is not None:
            die()
        return done

    def appending(op: Append) -> None:
        append(op)
        ev = op.event
        if ev.status == "run_step" and f"step:{ev.attempt}" == KILL:
            die()

    store.save_run, store.append = saving, appending


def crash_worker(
    url: str,
    kind: str,
    marks: str,
    model_url: str,
    session: str,
    kill: str,
    lease: float = 60.0,
) -> None:
    """Start the run (holding it ``lease`` seconds between steps) and die at ``kill``
    (never returns normally)."""
    configure(marks, kill)
    rt = build(url, kind)
    hook_kills(rt)
    res = rt.start(agent_for(kind), session, model_url, session, lease=lease)
    raise SystemExit(f"the run ended ({res.status}) instead of dying at {kill}")


def run_worker(url: str, kind: str, marks: str, model_url: str, session: str, out: str) -> None:
    """Start the run and let it end; write its result to ``out``."""
    configure(marks)
    rt = build(url, kind)
    res = rt.start(agent_for(kind), session, model_url, session)
    Path(out).write_text(json.dumps(result_json([res])))
    rt.close()


def resume_worker(
    url: str,
    kind: str,
    marks: str,
    out: str,
    *,
    ahead: float = 0.0,
    variant: str | None = None,
    barrier: Any = None,
    kill: str | None = None,
) -> None:
    """Resume every due run (the clock ``ahead`` seconds in the future: past the dead
    workers' leases); write the results to ``out``. With ``kill``, die there instead."""
    configure(marks, kill, variant)
    rt = build(url, kind, clock=lambda: time.time() + ahead)
    hook_kills(rt)
    if barrier is not None:
        barrier.wait()
    done = rt.resume()
    Path(out).write_text(json.dumps(result_json(done)))
    rt.close()


def result_json(results: Sequence[dar.RunResult]) -> list[dict[str, Any]]:
    return [
        {"session_id": r.session_id, "status": r.status, "output": r.output, "error": r.error,
         "approval_id": r.approval_id}
        for r in results
    ]  # fmt: skip


# --- the log -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One event of a session as compared between runs: no ids, times or hashes."""

    status: str
    tool: str
    effect: str
    attempt: int | None
    rule: str | None


def shape(events: Sequence[Event]) -> list[Shape]:
    """A session's events, as compared with another session's."""
    return [Shape(e.status, e.tool_name, e.effect, e.attempt, e.rule_name) for e in events]
