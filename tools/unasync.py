"""Generate the synchronous runtime from the asynchronous one.

`python/dar/runtime/aio.py` is the only hand-written facade. This script removes its
``async``/``await``, renames its async names to their sync twins, formats the result with
ruff and writes `python/dar/runtime/sync.py`. With ``--check`` it writes nothing and fails
when the checked-in file differs from what it would write (``make lint`` runs that).
Everything that cannot be a textual substitution lives in `dar.runtime.execute`.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "python/dar/runtime/aio.py"
TARGET = ROOT / "python/dar/runtime/sync.py"

HEADER = "# Generated from aio.py by tools/unasync.py: do not edit; run `make unasync`.\n"
DOCSTRING = '''"""The synchronous runtime: `dar.runtime.aio` with the awaits taken out.

Each public method sets up one decision of the core and hands it to the executor of
`dar.runtime.execute`, which runs store operations, rules and handlers in the caller's
thread.
"""
'''

#: Whole words, in order. The async names on the left, their sync twins on the right.
WORDS = [
    ("AsyncRuntime", "Runtime"),
    ("AsyncSagaScope", "SagaScope"),
    ("AsyncExecutor", "Executor"),
    ("acall_agent", "call_agent"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
]
#: Keywords and phrases.
PHRASES = [
    (r"\basync (def|with|for) ", r"\1 "),
    (r"\bawait ", ""),
]


def unasync(text: str) -> str:
    body = re.sub(r'\A""".*?"""\n', "", text, count=1, flags=re.S)
    for old, new in WORDS:
        body = re.sub(rf"\b{old}\b", new, body)
    for pattern, replacement in PHRASES:
        body = re.sub(pattern, replacement, body)
    return _ruff_format(HEADER + DOCSTRING + body)


def _ruff_format(text: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when sync.py is stale")
    parser.add_argument("--target", type=Path, default=TARGET, help="the file to write or check")
    args = parser.parse_args()
    target: Path = args.target
    wanted = unasync(SOURCE.read_text("utf-8"))
    if not args.check:
        target.write_text(wanted, "utf-8")
        return 0
    current = target.read_text("utf-8")
    if current == wanted:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(True),
        wanted.splitlines(True),
        str(target),
        "generated from aio.py",
    )
    sys.stderr.writelines(diff)
    sys.stderr.write(f"{target} is stale or was edited by hand: run `make unasync`\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
