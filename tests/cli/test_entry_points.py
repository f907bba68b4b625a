"""How `dar` is started: `python -m dar` and `python -m dar.cli`."""

from __future__ import annotations

import subprocess
import sys


def test_python_dash_m_dar() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dar", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dar ")


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dar.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dar ")
    bad = subprocess.run(
        [sys.executable, "-m", "dar.cli", "events", "--db", "mysql://x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown database URL" in bad.stdout
