"""The sessions model every view shares: sessions listed and filtered in SQL, a session's
calls and rows, tampered rows marked (on SQLite and on Postgres).

Real sessions in a real SQLite file (built once per module), no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dar
from dar import Effect, Runtime, tool
from dar.store import AdminStore, open_store
from dar.store.sql import SessionFilter
from dar.views.sessions import INPUT, SAME, STATUS, diff, list_sessions, load_session
from tests.support.views_data import SCRIPT, build


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views") / "views.db"
    build(path)
    return path


def url(db: Path) -> str:
    return f"sqlite:///{db}"


# --- the model --------------------------------------------------------------------------------


def test_sessions_list_counts_from_sql(db: Path) -> None:
    store = open_store(url(db))
    try:
        found = {s.session_id: s for s in list_sessions(store)}
        assert [s.session_id for s in list_sessions(store)] == ["s-t", "b", "a", "s-1"]
        s1 = found["s-1"]
        assert (s1.refused, s1.failed, s1.indeterminate) == (1, 2, 0)
        only = list_sessions(store, SessionFilter(tool="flaky"))
        assert [s.session_id for s in only] == ["s-1"]
        assert [s.session_id for s in list_sessions(store, SessionFilter(text="S-"))] == [
            "s-t",
            "s-1",
        ]
        assert list_sessions(store, SessionFilter(text="%")) == []  # LIKE is escaped
        rejected = list_sessions(store, SessionFilter(status="rejected"))
        assert [s.session_id for s in rejected] == ["s-1"]
    finally:
        store.close()


def test_session_view_has_every_kind_of_row(db: Path) -> None:
    store = open_store(url(db))
    try:
        view = load_session(store, "s-1")
    finally:
        store.close()
    assert view.chain_ok
    calls = list(view.walk())
    assert [(c.tool, c.status) for c in calls] == [
        ("lookup", "executed"),
        ("send", "executed"),
        ("send", "cached"),
        ("send", "rejected"),
        ("flaky", "failed"),
        ("pay", "approved"),
        ("pay", "executed"),
        ("saga", "saga_ended"),
        ("book", "executed"),
        ("charge", "failed"),
        ("cancel_booking", "executed"),
    ]
    assert calls[0].input == {"town": SCRIPT}
    cached = calls[2]
    assert cached.origin is not None and cached.origin.output == {"sent": "A"}
    assert cached.origin.call_id == calls[1].call_id
    assert (calls[3].rule, calls[3].reason) == ("no_yunguyo", "no courier covers Yunguyo")
    assert calls[4].error == "TimeoutError: courier API timed out for 1" and calls[4].attempts == 1
    assert [r.status for r in calls[5].rows] == ["approval_requested", "approved"]
    assert calls[7].is_saga and [c.tool for c in view.calls[7].children] == [
        "book",
        "charge",
        "cancel_booking",
    ]
    assert {r.badge for c in calls for r in c.rows} == {"verified"}
    assert json.loads(json.dumps(view.as_dict()))["calls"][7]["saga"] is True


def test_a_tampered_row_is_broken_and_the_rest_unverified(db: Path) -> None:
    store = open_store(url(db))
    try:
        view = load_session(store, "s-t")
    finally:
        store.close()
    assert not view.chain_ok
    assert [c.badge for c in view.calls] == ["broken", "unverified", "unverified"]
    assert view.calls[0].rows[0].note == "content or order changed"


def test_one_session_reads_only_its_own_chain_head(db: Path) -> None:
    store = open_store(url(db))
    try:
        assert isinstance(store, AdminStore)
        every = store.chain_heads()
        assert len(every) > 1
        assert store.chain_heads("s-1") == {"s-1": every["s-1"]}
        assert store.chain_heads("nobody") == {}
    finally:
        store.close()


# --- on Postgres ------------------------------------------------------------------------------


def test_sessions_list_and_view_on_postgres(pg_url: str) -> None:
    from dar import Runtime
    from tests.support.views_data import RULES, TOOLS, diff_sessions, full_session

    with Runtime(pg_url, tools=TOOLS, rules=RULES) as rt:
        full_session(rt)
        diff_sessions(rt)
        store = rt.store
        assert isinstance(store, AdminStore)
        found = list_sessions(store)
        assert [(s.session_id, s.refused, s.failed) for s in found] == [
            ("b", 0, 0),
            ("a", 0, 0),
            ("s-1", 1, 2),
        ]
        assert [s.session_id for s in list_sessions(store, SessionFilter(tool="flaky"))] == ["s-1"]
        assert list_sessions(store, SessionFilter(text="%")) == []
        assert store.chain_heads("s-1") == {"s-1": store.chain_heads()["s-1"]}
        view = load_session(store, "s-1")
        assert view.chain_ok and len(list(view.walk())) == 11
        assert [p.kind for p in diff(load_session(store, "a"), load_session(store, "b"))] == [
            SAME,
            INPUT,
            STATUS,
        ]


def test_a_durable_run_is_one_call_named_by_its_agent_with_its_journal(tmp_path: Path) -> None:
    @tool(effect=Effect.READ)
    def look(order_id: str) -> str:
        return f"{order_id} is in Puno"

    rt = Runtime(f"sqlite:///{tmp_path / 'runs.db'}", tools=[look])

    @dar.agent
    def support(order_id: str) -> str:
        seen: str = rt.call("look", {"order_id": order_id}).output
        return seen

    assert rt.start(support, "conv-r", "ORD-1").status == "finished"
    rt.close()
    store = open_store(url(tmp_path / "runs.db"))
    try:
        view = load_session(store, "conv-r")
    finally:
        store.close()
    (run,) = [c for c in view.walk() if c.is_run]
    assert run.label == f"run {support.__module__}:{support.__qualname__}"
    assert [r.status for r in run.rows] == ["run_started", "run_step", "run_ended"]
    assert run.as_dict()["run"] is True and run.as_dict()["label"] == run.label
    assert [c.tool for c in view.walk() if not c.is_run] == ["look"]


def test_a_search_is_one_call_holding_its_tree_and_what_it_tried(tmp_path: Path) -> None:
    from tests.support.couriers import World, propose, score

    with World().runtime(f"sqlite:///{tmp_path / 'search.db'}") as rt:
        found = rt.speculate("conv-s", propose=propose, score=score, budget=16)
        rt.commit_all(found.best)
    store = open_store(url(tmp_path / "search.db"))
    try:
        view = load_session(store, "conv-s")
    finally:
        store.close()
    [search] = view.calls  # the commits and every call tried are nested in the search
    assert search.label == "search" and search.status == "speculated"
    tree = search.as_dict()["output"]["tree"]
    assert [n["chosen"] for n in tree] == [n.chosen for n in found.tree]
    assert {c.status for c in search.children} == {"executed", "planned"}
