"""The sync runtime is generated from the async one (`tools/unasync.py`): the checked-in
`runtime/sync.py` is exactly what the script writes, and a hand edit is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "unasync.py"
SYNC = ROOT / "python" / "dar" / "runtime" / "sync.py"


def check(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--target", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_the_checked_in_sync_runtime_is_what_the_script_writes() -> None:
    done = check(SYNC)
    assert done.returncode == 0, done.stderr


def test_a_hand_edit_of_the_sync_runtime_is_caught(tmp_path: Path) -> None:
    edited = tmp_path / "sync.py"
    text = SYNC.read_text()
    assert "return [s.saga_id for s in done]" in text
    edited.write_text(text.replace("return [s.saga_id for s in done]", "return []"))
    done = check(edited)
    assert done.returncode == 1
    assert "-        return []" in done.stderr and "+        return [s.saga_id for s in done]" in (
        done.stderr
    )
    assert "is stale or was edited by hand: run `make unasync`" in done.stderr


def test_the_sync_runtime_says_it_is_generated() -> None:
    assert SYNC.read_text().startswith("# Generated from aio.py by tools/unasync.py: do not edit")
