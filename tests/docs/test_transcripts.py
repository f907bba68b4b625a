"""Every `console` block in the README and docs/ is a real transcript: its commands are run
again, in order, in one fresh folder per page, and what they print must be what the page
shows (times, salted keys, ids and durations masked; a `...` line skips any number of lines).

A `$ ` line is a command: `dar ...`, or `python EXAMPLE.py` for a file under `examples/` (all
of them are copied into the folder first, as a reader who saved them would have them). Blocks
marked `sh` are never run: they show commands for machines the tests do not have.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .pages import EXAMPLES, PAGES, ROOT, blocks, name

#: The terminal width the transcripts were taken at (rich and argparse both read it).
COLUMNS = "100"

#: What changes from run to run, masked on both sides before comparing.
MASKS = [
    (re.compile(r"\d\d-\d\d \d\d:\d\d:\d\d"), "MM-DD hh:mm:ss"),  # dar events
    (re.compile(r"\d\d:\d\d:\d\d\.\d{3}"), "hh:mm:ss.fff"),  # trace, the demo's audit trail
    (re.compile(r":key:[0-9a-f]+"), ":key:<salted>"),  # a given key, hashed with the salt
    (re.compile("\U0001f511[0-9a-f]+"), "\U0001f511<salted>"),  # the same, abbreviated
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"), "<id>-"),  # approval and plan ids
    (re.compile(r"\b\d+\.\d\b"), "N.N"),  # durations and percentiles in ms
]

SKIP = "..."


@dataclass
class Step:
    command: str
    expected: list[str]


def steps(block: str) -> list[Step]:
    """A transcript's commands, each with the lines shown after it."""
    found: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append(Step(line[2:], []))
        else:
            assert found, f"transcript output before any command: {line!r}"
            found[-1].expected.append(line.rstrip())
    return found


def mask(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "dar":
        return [sys.executable, "-m", "dar", *words[1:]]
    if words[0] == "python" and len(words) == 2 and (EXAMPLES / words[1]).is_file():
        return [sys.executable, words[1]]
    raise AssertionError(f"a transcript may run `dar ...` or `python EXAMPLE.py`: {command!r}")


def run(command: str, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "DAR_DATABASE_URL")}
    paths = [str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]
    env.update(COLUMNS=COLUMNS, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    done = subprocess.run(
        argv(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
    return done.stdout.splitlines()


def matches(expected: list[str], actual: list[str]) -> str | None:
    """Why ``actual`` is not what ``expected`` shows, or None. The runs of lines between
    `...` must appear in order, each contiguous; the first at the start and the last at the
    end unless a `...` stands there."""
    want = [mask(line) for line in expected]
    got = [mask(line) for line in actual]
    if not want and got:
        return "the page shows no output (a `...` line skips it on purpose)"
    runs: list[list[str]] = [[]]
    for line in want:
        if line == SKIP:
            runs.append([])
        else:
            runs[-1].append(line)
    at = 0
    for i, lines in enumerate(runs):
        if not lines:
            continue
        anchored_start = i == 0
        anchored_end = i == len(runs) - 1
        last_start = len(got) - len(lines)
        starts = [at] if anchored_start else range(at, last_start + 1)
        if anchored_end:
            starts = [s for s in starts if s == last_start]
        hit = next((s for s in starts if got[s : s + len(lines)] == lines), None)
        if hit is None:
            return f"not found in order:\n{chr(10).join(lines)}\n--- real output:\n" + "\n".join(
                got
            )
        at = hit + len(lines)
    return None


def test_a_masked_line_matches_itself_only_where_it_should() -> None:
    assert matches(["a", SKIP, "c"], ["a", "b", "b", "c"]) is None
    assert matches(["a", "c"], ["a", "b", "c"]) is not None  # no skip: contiguous
    assert matches(["b"], ["a", "b"]) is not None  # anchored at the start
    assert matches([SKIP, "b"], ["a", "b", "c"]) is not None  # ... and at the end
    assert matches([], ["a"]) is not None  # output the page does not show
    assert matches([SKIP], ["a"]) is None
    assert mask("10:38:55.629 x EXECUTED 0.1 ms key a:key:0142fc") == mask(
        "23:01:02.003 x EXECUTED 12.5 ms key a:key:99"
    )


TRANSCRIBED = [p for p in PAGES if blocks(p, "console")]


def test_the_readme_and_the_guides_have_transcripts() -> None:
    assert {"README.md", "docs/postmortem.md", "docs/cli.md"} <= {name(p) for p in TRANSCRIBED}


@pytest.mark.parametrize("page", TRANSCRIBED, ids=name)
def test_transcripts_are_what_the_commands_print(page: Path, tmp_path: Path) -> None:
    for example in EXAMPLES.glob("*.py"):
        shutil.copy(example, tmp_path)
    for block in blocks(page, "console"):
        for step in steps(block):
            why = matches(step.expected, run(step.command, tmp_path))
            assert why is None, f"{name(page)}: $ {step.command}\n{why}"
