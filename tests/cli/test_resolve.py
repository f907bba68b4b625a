"""`dar resolve`: an operator decides an indeterminate call; a live claim is refused unless
forced; the resolution joins the story of the call it decides."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dar import Effect, Runtime, Status, rule, tool
from dar.cli.main import main
from dar.core.ops import GetClaim
from tests.support.cli import cli


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")


def test_resolve_refuses_a_live_claim_unless_forced(
    shared_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the airtight review: `dar resolve --not-executed` releases a claim that is still
    running with a live lease, and a second worker then runs the irreversible handler
    concurrently."""
    release = threading.Event()
    ran: list[str] = []

    @tool(effect=Effect.IRREVERSIBLE, key=lambda i: f"wire:{i['n']}", lease=300)
    def wire(n: int) -> str:
        ran.append("wire")
        release.wait(30)
        return "sent"

    allow = rule(applies_to="*", name="allow")(lambda i, c: True)
    rt = Runtime(shared_url, rules=[allow])
    worker = threading.Thread(target=rt.execute, args=(wire, {"n": 1}))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while ran != ["wire"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        key = next(e.idempotency_key for e in rt.events(status="started"))
        assert key is not None
        code, out = cli(["resolve", key, "--db", shared_url, "--not-executed"], capsys)
        assert code == 1, f"a live claim was released: {out}"
        assert rt.owner in out, f"the lease owner is not named: {out}"
        claim = rt.store.get_claim(GetClaim(key))
        assert claim is not None and claim.state == "running"
        code, out = cli(["resolve", key, "--db", shared_url, "--not-executed", "--force"], capsys)
        assert code == 0, out
        assert rt.store.get_claim(GetClaim(key)).state == "released"  # type: ignore[union-attr]
    finally:
        release.set()
        worker.join(30)
        rt.close()


def test_resolve_row_joins_the_call_it_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = [1000.0]

    @tool(effect=Effect.MUTATE_EXTERNAL, lease=10)
    def ship(o: str) -> str:
        return "shipped"

    from tests.support.calls import abandon_claim

    rt = Runtime(url, clock=lambda: now[0], wait=0)
    abandon_claim(rt, ship, {"o": "A"}, correlation_id="conv-9")
    now[0] += 11
    stuck = rt.execute(ship, {"o": "A"}, correlation_id="conv-9")
    assert stuck.status == Status.INDETERMINATE and stuck.key
    assert cli(["resolve", stuck.key, "--db", url, "--not-executed"], capsys)[0] == 0
    [started] = rt.events(status="started")
    [resolved] = rt.events(status="resolved")
    assert resolved.correlation_id == "conv-9"
    assert resolved.effect == "mutate-external" and resolved.call_id == started.call_id
    code, out = cli(["trace", "conv-9", "--db", url], capsys)
    assert code == 0 and "RESOLVED" in out
    assert cli(["verify", "--db", url], capsys)[0] == 0
    rt.close()


def test_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = [1000.0]

    @tool(effect=Effect.MUTATE_EXTERNAL, lease=10, key=lambda i: f"ship:{i['o']}")
    def ship(o: str) -> str:
        return "shipped"

    from tests.support.calls import abandon_claim

    rt = Runtime(url, clock=lambda: now[0], wait=0)
    abandon_claim(rt, ship, {"o": "A"})
    now[0] += 11
    stuck = rt.execute(ship, {"o": "A"})
    assert stuck.status == Status.INDETERMINATE and stuck.key is not None
    key = stuck.key  # as `dar events --status indeterminate` lists it
    assert main(["resolve", key, "--db", url, "--executed", "--output", '{"t": 1}']) == 0
    assert "indeterminate -> done" in capsys.readouterr().out
    res = rt.execute(ship, {"o": "A"})
    assert (res.status, res.output) == (Status.CACHED, {"t": 1})
    assert main(["resolve", key, "--db", url, "--not-executed"]) == 1
    assert main(["resolve", "nope", "--db", url, "--executed"]) == 1
    assert main(["resolve", key, "--db", url, "--executed", "--output", "{bad"]) == 2
