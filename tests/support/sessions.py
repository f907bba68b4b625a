"""A recorded session for the audit tests (trace, stats, replay, the chain, retention,
redaction), and editing history as a database owner would."""

from __future__ import annotations

from typing import Any

from dar import (
    Deny,
    Effect,
    RuleContext,
    Runtime,
    rule,
    tool,
)
from dar.audit.postmortem import verify


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
