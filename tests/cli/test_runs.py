"""`dar runs`: the durable runs of a database, one run's journal, and the worker that
resumes them (`dar runs resume --app`, once or `--watch`ing until Ctrl-C), run as the
real command on a SQLite file and on Postgres."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import runs as R
from tests.support.calls import wait_until
from tests.support.cli import dar_cmd

CTX = mp.get_context("forkserver")
CTX.set_forkserver_preload(["tests.support.runs"])


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the handlers mark, in this process and in the commands it runs."""
    folder = tmp_path / "marks"
    folder.mkdir()
    monkeypatch.setenv("DAR_TEST_MARKS", str(folder))
    monkeypatch.setattr(R, "MARKS", folder)
    monkeypatch.setattr(R, "RUNTIME", None)
    return folder


def run(*args: str) -> tuple[int, str]:
    done = dar_cmd(*args)
    return done.returncode, (done.stdout + done.stderr).decode()


def crash(url: str, kind: str, marks: Path, model_url: str, session: str, lease: float) -> None:
    """A worker process starts ``session`` holding it ``lease`` seconds between steps,
    and dies (SIGKILL) after its step 5."""
    args = (url, kind, str(marks), model_url, session, "step:5", lease)
    proc = CTX.Process(target=R.crash_worker, args=args)
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL


def test_dar_runs_lists_each_run_with_its_state_steps_tokens_and_why(
    shared_url: str, marks: Path
) -> None:
    with (
        R.ConversationServer(R.REFUND) as done,
        R.ConversationServer(R.APPROVAL) as asks,
        R.build(shared_url, "sync") as rt,
    ):
        rt.start(R.support, "fin", done.url, "fin")
        waiting = rt.start(R.support, "wait", asks.url, "wait")
        rt.start(R.small("returns_opaque", "sync"), "bad")
    code, out = run("runs", "--db", shared_url)
    assert code == 0, out
    assert "3 durable runs" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    cells = [cell.strip() for cell in lines["fin"].split("│")[2:7]]
    assert cells == ["tests.support.runs:support", "finished", "12", "12", "0"]
    assert f"waits for approval {waiting.approval_id}" in lines["wait"]
    assert "TypeError: the agent returned a value with no JSON form" in lines["bad"]
    code, out = run("runs", "--state", "suspended", "--json", "--db", shared_url)
    assert code == 0, out
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert (record["session_id"], record["state"], record["approval_id"]) == (
        "wait", "suspended", waiting.approval_id,
    )  # fmt: skip
    code, out = run("runs", "--state", "stuck", "--db", shared_url)
    assert code == 2 and "--state: one of running, suspended, finished, failed" in out


def test_dar_runs_show_walks_one_runs_journal_step_by_step(shared_url: str, marks: Path) -> None:
    """Killed after step 5 and resumed: the resume answered steps 0-5 (6 tokens) from
    the journal."""
    with R.ConversationServer(R.REFUND) as model:
        crash(shared_url, "sync", marks, model.url, "s1", lease=0.2)
        time.sleep(0.3)
        with R.build(shared_url, "sync") as rt:
            (res,) = rt.resume()
        assert res.status == "finished"
    code, out = run("runs", "show", "s1", "--db", shared_url)
    assert code == 0, out
    assert "run s1 of tests.support.runs:support: finished, 12 steps journaled" in out
    assert "tokens spent: 12; saved by replay: 6" in out
    assert "rejected: [refund_limit] refunds over 1000 are refused: a manager must do it" in out
    code, out = run("runs", "show", "s1", "--json", "--db", shared_url)
    shown = json.loads(out)
    assert [(s["index"], s["kind"], s["name"]) for s in shown["steps"][:4]] == [
        (0, "step", "ticket"),
        (1, "model", "openai.chat"),
        (2, "tool", "lookup_order"),
        (3, "model", "openai.chat"),
    ]
    assert [(s["status"], s["said"]) for s in shown["steps"] if s["kind"] == "tool"] == [
        ("executed", '{"customer":"ana@example.com","order_id":"ORD-s1","total":120}'),
        ("rejected", "[refund_limit] refunds over 1000 are refused: a manager must do it"),
        ("executed", '{"order_id":"ORD-s1","refunded":50}'),
        ("executed", '{"order_id":"ORD-s1","refunds":[50]}'),
        ("executed", '{"sent":true}'),
    ]
    assert shown["steps"][0]["status"] == "recorded"
    assert shown["steps"][0]["said"].startswith('"T-')
    assert sum(s["tokens"] for s in shown["steps"]) == 12
    assert (shown["run"]["tokens"], shown["run"]["tokens_saved"]) == (12, 6)
    assert shown["history"] == [{"status": "run_ended", "said": "finished"}]
    code, out = run("runs", "show", "nobody", "--db", shared_url)
    assert code == 1 and "no durable run with session nobody" in out


@pytest.mark.parametrize(
    ("app", "kind"),
    [("app", "sync"), ("rt", "sync"), ("app_at", "sync"), ("async_app", "async"), ("art", "async")],
)
def test_dar_runs_resume_runs_crashed_runs_again_with_the_apps_runtime(
    shared_url: str, marks: Path, monkeypatch: pytest.MonkeyPatch, app: str, kind: str
) -> None:
    monkeypatch.setenv("DAR_TEST_DB", shared_url)
    with R.ConversationServer(R.REFUND) as model:
        crash(shared_url, kind, marks, model.url, "c1", lease=0.2)
        time.sleep(0.3)
        db = ["--db", shared_url] if app == "app_at" else []
        code, out = run("runs", "resume", "--app", f"tests.support.runs_app:{app}", *db)
        assert code == 0, out
        assert out.splitlines() == [
            'c1: finished: "Refunded 50 on ORD-c1 and told the customer."',
            "resumed 1 runs",
        ]
        assert len(model.of("c1")) == len(R.REFUND)
        code, out = run("runs", "resume", "--app", f"tests.support.runs_app:{app}", *db)
        assert (code, out.strip()) == (0, "resumed 0 runs")
    assert R.count(marks, "effect.refund.ORD-c1.50") == 1
    assert R.count(marks, "effect.send_email.ORD-c1") == 1


def test_dar_runs_resume_says_what_is_wrong_with_its_app(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAR_TEST_DB", shared_url)
    code, out = run("runs", "resume", "--db", shared_url)
    assert code == 2 and "needs --app MODULE:ATTR" in out
    code, out = run("runs", "resume", "--app", "tests.support.nowhere:app")
    assert code == 2 and "cannot load --app tests.support.nowhere:app" in out
    code, out = run("runs", "resume", "--app", "tests.support.runs_app:not_a_runtime")
    assert code == 2 and "is neither a Runtime nor a factory of one" in out
    code, out = run("runs", "resume", "--app", "tests.support.runs_app:rt", "--db", shared_url)
    assert code == 2 and "is a runtime with its own database: drop --db" in out


class Watcher:
    """`dar runs resume --watch` in a process of its own, its lines read as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dar.cli", "runs", "resume", "--watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def says(self, text: str, timeout: float = 30.0) -> float:
        """Wait until a line contains ``text``; seconds it took."""
        started = time.monotonic()
        wait_until(lambda: any(text in line for line in self.lines), timeout)
        return time.monotonic() - started

    def stop(self) -> tuple[int, list[str]]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        self._reader.join(10)
        return code, self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def test_dar_runs_resume_watch_goes_on_as_people_decide_and_workers_die_until_ctrl_c(
    shared_url: str, marks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision wakes the watcher at once on Postgres (LISTEN/NOTIFY: well before its
    idle wait of 10 s), within a second of polling on SQLite; a crashed run is resumed
    when its lease runs out."""
    monkeypatch.setenv("DAR_TEST_DB", shared_url)
    with R.ConversationServer(R.APPROVAL) as asks, R.ConversationServer(R.REFUND) as model:
        with R.build(shared_url, "sync") as rt:
            waiting = rt.start(R.support, "w1", asks.url, "w1")
        assert waiting.status == "suspended" and waiting.approval_id is not None
        watcher = Watcher("--app", "tests.support.runs_app:app")
        try:
            watcher.says("watching for decisions and crashed runs (Ctrl-C to stop)")
            time.sleep(0.5)  # it is waiting now
            code, out = run("approve", waiting.approval_id, "--by", "alice", "--db", shared_url)
            assert code == 0, out
            took = watcher.says('w1: finished: "Done with ORD-w1."')
            assert took < 5.0
            crash(shared_url, "sync", marks, model.url, "w2", lease=1.0)
            watcher.says('w2: finished: "Refunded 50 on ORD-w2 and told the customer."')
            code, lines = watcher.stop()
        finally:
            watcher.kill()
    assert code == 0 and lines[-1] == "stopped", lines
    assert R.count(marks, "effect.refund.ORD-w1.300") == 1
    assert R.count(marks, "effect.refund.ORD-w2.50") == 1
    assert [line.split(":")[0] for line in lines if "finished" in line] == ["w1", "w2"]
