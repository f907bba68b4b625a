"""Shared test configuration: Hypothesis profiles and the data directory."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from dar import Runtime
from tests.support.runtimes import RUNTIME_KINDS
from tests.support.runtimes import make as make_kind

DATA = Path(__file__).parent / "data"

settings.register_profile("default", deadline=None, max_examples=200)
settings.register_profile(
    "soak", deadline=None, max_examples=2000, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- stores -----------------------------------------------------------------------------------


STORE_KINDS = ["sqlite-memory", "sqlite-file", "postgres"]


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """A Postgres server for the whole session: given, or started here and stopped after."""
    given = os.environ.get("DAR_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    from tests.support.pg import start_server

    server = start_server()
    try:
        yield server.url
    finally:
        server.close()


def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_url(pg_base_url: str) -> str:
    """A Postgres URL with a schema of this test's own."""
    return f"{pg_base_url}?schema={fresh_schema()}"


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder where handlers in any process record that they ran."""
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv("DAR_TEST_MARKS", str(folder))
    import tests.support.workers

    monkeypatch.setattr(tests.support.workers, "MARKS", folder)
    return folder


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    """A SQLite file URL shared by threads and processes."""
    return f"sqlite:///{tmp_path / 'agent.db'}"


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store the runtime must behave identically on."""
    kind = request.param
    if kind == "sqlite-memory":
        return "sqlite://:memory:"
    if kind == "sqlite-file":
        return f"sqlite:///{tmp_path / 'agent.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite-file", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database several processes can share."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'agent.db'}"
    return str(request.getfixturevalue("pg_url"))


def execute_sql(store: Any, sql: str) -> None:
    """Run raw SQL on a store's own database (to try what the application must not do)."""
    if hasattr(store, "db"):
        store.db.execute(sql)
        return
    with store.pool.connection() as conn:
        conn.execute(sql.replace("agent_tool_events", f'"{store.st.schema}".agent_tool_events'))


class Clock:
    """An injectable clock: the runtime reads it; tests move it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=RUNTIME_KINDS)
def runtime_kind(request: pytest.FixtureRequest) -> str:
    """Each runtime: the conformance suite runs on sync and async alike."""
    return str(request.param)


@pytest.fixture
def make_runtime(store_url: str, runtime_kind: str) -> Iterator[Callable[..., Runtime]]:
    """Build runtimes of the parametrized kind on the parametrized store; closed at the end
    of the test. (An async runtime comes with a `Runtime`'s blocking methods.)"""
    made: list[Runtime] = []

    def make(**kwargs: Any) -> Runtime:
        url = kwargs.pop("url", store_url)
        if made and url == "sqlite://:memory:" and "store" not in kwargs:
            rt = make_kind(runtime_kind, made[0].store, **kwargs)  # one in-memory database
        else:
            rt = make_kind(runtime_kind, kwargs.pop("store", url), **kwargs)
        made.append(rt)
        return rt  # type: ignore[no-any-return]

    yield make
    for rt in made:
        with contextlib.suppress(Exception):  # a shared in-memory store closes once
            rt.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every test, Postgres included, must run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\n{skipped} test(s) skipped: under CI every test must run")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say what the exactly-once state machine and the fault tests covered in this run."""
    from tests.support.coverage import STATS as stats

    if stats:
        terminalreporter.section("exactly-once coverage")
        for name, count in sorted(stats.items()):
            terminalreporter.write_line(f"{name:>24}: {count}")
