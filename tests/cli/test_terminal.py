"""Log contents are printed safely: no escape sequence from the log reaches the operator's
terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from dar import Deny, Effect, Runtime, rule, tool
from tests.support.cli import dar_cmd


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width: keep messages on one line for the assertions."""
    monkeypatch.setenv("COLUMNS", "400")


EVIL = ["\x1b]0;evil\x07", "\x1b[2J", "\x1b]52;c;ZXZpbA==\x07"]


def test_log_contents_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """Found by the airtight review: CLI: raw escape sequences from log contents (`ESC]0;`,
    `ESC[2J`, OSC 52 clipboard writes) reach the operator's terminal in `events`, `trace` and
    `stats`."""
    url = f"sqlite:///{tmp_path / 'evil.db'}"
    evil = "".join(EVIL)

    @tool(name=f"t{evil}", effect=Effect.MUTATE_LOCAL, key=lambda i: f"k{evil}{i['n']}")
    def t(n: int, text: str) -> str:
        if n == 2:
            raise ValueError(f"boom {evil}")
        return f"out {evil}"

    deny = rule(applies_to="*", name=f"r{evil}")(
        lambda i, c: Deny(f"no {evil}") if i["n"] == 3 else True
    )
    with Runtime(url, rules=[deny]) as rt:
        for n in (1, 1, 2, 3):
            rt.execute(t, {"n": n, "text": f"in {evil}"}, correlation_id="s16")
    for args in (["events"], ["trace", "s16"], ["stats"], ["events", "--status", "failed"]):
        out = dar_cmd(*args, "--db", url)
        assert out.returncode == 0, out.stderr.decode()
        assert b"boom" in out.stdout or b"s16" in out.stdout or b"t" in out.stdout
        for control in (b"\x1b", b"\x07"):
            assert control not in out.stdout, f"`dar {args[0]}` printed a raw {control!r}"


def test_trace_escapes_the_session_id_in_its_title(tmp_path: Path) -> None:
    # The tree's title once printed the argument raw: an OSC sequence reached the terminal.
    url = f"sqlite:///{tmp_path / 'esc.db'}"
    hostile = "s\x1b]0;owned\x07\x1b[2J"
    rt = Runtime(url)
    rt.call("nothing", {}, correlation_id=hostile)
    rt.close()
    done = dar_cmd("trace", hostile, "--db", url)
    out = done.stdout.decode()
    assert done.returncode == 0 and "\x1b" not in out and "\x07" not in out
    assert "session s\\x1b]0;owned" in out
