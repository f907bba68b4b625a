"""Running `dar` in the tests: in-process (return code and output) or as a command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import pytest

from dar.cli.main import main


def cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `dar` in-process; an unknown option (argparse's exit 2) is a return code too."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def dar_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m dar.cli` with its output on pipes (no terminal: no styling of its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "dar.cli", *args], capture_output=True, timeout=timeout, env=env
    )
