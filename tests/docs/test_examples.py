"""The README and the manual are a contract: every Python block in `README.md` and `docs/*.md`
has a runnable copy under `examples/`, and these tests run them (each in a fresh folder, as a
newcomer would). `tests/docs/` checks the rest of the pages (transcripts, links)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dar import Runtime
from tests.docs.pages import PAGES
from tests.docs.pages import name as page_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

#: Examples that need a server the suite starts (run by the tests that start it).
NEEDS_SERVER = {"agent_loop_openai.py", "pgbouncer.py", "postgres.py"}


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def example_texts() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted(EXAMPLES.rglob("*.py"))}


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_every_python_block_has_a_runnable_copy(page: Path) -> None:
    texts = example_texts()
    missing = [b for b in python_blocks(page) if not any(b in text for text in texts.values())]
    assert not missing, (
        f"{page_name(page)}: blocks with no copy under examples/:\n" + "\n---\n".join(missing)
    )


def run_example(path: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # The example's folder first (examples import each other), then whatever the suite runs on.
    paths = [str(path.parent), str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), **env}
    return subprocess.run(
        [sys.executable, str(path)], cwd=cwd, env=environ, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in NEEDS_SERVER),
)
def test_example_runs(name: str, tmp_path: Path) -> None:
    done = run_example(EXAMPLES / name, tmp_path)
    assert done.returncode == 0, done.stderr


def test_quickstart_prints_the_same_thing_every_run(tmp_path: Path) -> None:
    """The README's quick start, as pasted, twice in one folder: its own fresh log each time,
    so the second run prints what the first did (tests/docs checks it against the README)."""
    first = run_example(EXAMPLES / "quickstart.py", tmp_path)
    assert first.returncode == 0, first.stderr
    out = first.stdout.splitlines()
    assert out[0] == "executed cached {'order_id': 'ORD-123', 'tracking': 'SHALOM-ORD-123'}"
    assert out[1].startswith("Refused by the rule courier_must_cover_zone")
    again = run_example(EXAMPLES / "quickstart.py", tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_postgres_example(pg_base_url: str, tmp_path: Path) -> None:
    done = run_example(EXAMPLES / "postgres.py", tmp_path, DAR_DATABASE_URL=pg_base_url)
    assert done.returncode == 0, done.stderr


def test_pgbouncer_example(pg_base_url: str, tmp_path: Path) -> None:
    from tests.support.pgbouncer import Bouncer

    bouncer = Bouncer(pg_base_url, pool_size=2)
    try:
        done = run_example(EXAMPLES / "pgbouncer.py", tmp_path, DAR_DATABASE_URL=bouncer.url)
    finally:
        bouncer.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "cached"  # the first may be cached by an earlier run


def test_agent_loop_example_against_a_local_model(tmp_path: Path) -> None:
    """docs/agents.md's loop with the real OpenAI client and a scripted model: a duplicate
    call in one turn runs once, the refusal reaches the model as text."""
    from dar.demo.scripted_model import ModelServer, ToolCall

    ship = '{"order_id": "ORD-7", "courier": "shalom", "zone": "puno"}'
    same = '{"zone": "puno", "order_id": "ORD-7", "courier": "shalom"}'
    far = '{"order_id": "ORD-8", "courier": "shalom", "zone": "yunguyo"}'
    calls = [ToolCall("dispatch_order", a) for a in (ship, same, far)]
    turns: list[list[ToolCall] | str] = [calls, "ORD-7 is on its way; ORD-8 cannot go."]
    with ModelServer(turns) as server:
        env = {"OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "test"}
        done = run_example(EXAMPLES / "agent_loop_openai.py", tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ORD-7 is on its way; ORD-8 cannot go.")
    second = server.bodies("/v1/chat/completions")[1]
    results = [m["content"] for m in second["messages"] if m.get("role") == "tool"]
    assert len(results) == 3 and results[0] == results[1]  # the duplicate: the same answer
    assert "shalom does not deliver to yunguyo" in results[2]
    with Runtime(f"sqlite:///{tmp_path / 'agent.db'}") as rt:
        ran = [e.input["order_id"] for e in rt.events(correlation_id="conv-1", status="executed")]
    assert ran == ["ORD-7"]
