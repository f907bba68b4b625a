"""What the pages of README.md and docs/ point at exists: every example is run by a test,
relative links and images resolve (anchors too), `json` blocks parse, and the `dar` command
lines in `sh` blocks are ones the real parser accepts. (Python blocks: tests/test_examples.py;
console transcripts: test_transcripts.py.)"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

from dar.cli.main import build_parser

from .pages import EXAMPLES, PAGES, ROOT, blocks, name

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


def test_every_example_is_run_by_a_test() -> None:
    tests = {p: p.read_text() for p in (ROOT / "tests").rglob("test_*.py")}
    runner = ROOT / "tests" / "docs" / "test_examples.py"
    module = importlib.import_module("tests.docs.test_examples")
    for example in sorted(EXAMPLES.glob("*.py")):
        if example.name in module.NEEDS_SERVER:  # the others: test_example_runs, each
            assert f'EXAMPLES / "{example.name}"' in tests[runner], example.name
    for example in sorted((EXAMPLES / "integrations").glob("*.py")):
        if example.name == "shop.py":  # what the others import
            continue
        run_by = [p for p, text in tests.items() if f'"{example.name}"' in text]
        assert run_by, f"examples/integrations/{example.name} is run by no test"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in HEADING.findall(text)}


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{name(page)}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{name(page)}: no heading for {target}"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "json")], ids=name)
def test_json_blocks_parse(page: Path) -> None:
    for block in blocks(page, "json"):
        json.loads(block)


def dar_lines(page: Path) -> list[list[str]]:
    """The `dar ...` command lines of a page's `sh` blocks, as words; synopses (with
    `[optional]` parts or placeholders such as KEY) are left out."""
    found = []
    for block in blocks(page, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["dar"] and not any("[" in w or w.isupper() for w in words):
                found.append(words[1:])
    return found


@pytest.mark.parametrize("page", [p for p in PAGES if dar_lines(p)], ids=name)
def test_dar_commands_in_sh_blocks_parse(page: Path) -> None:
    parser = build_parser()
    for words in dar_lines(page):
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            raise AssertionError(f"{name(page)}: dar {shlex.join(words)}") from exc


def test_the_images_of_the_views_are_linked() -> None:
    views = (ROOT / "docs" / "views.md").read_text()
    for image in ("view.svg", "report.png", "ui.png", "ui-sessions.png"):
        assert (ROOT / "docs" / image).exists()
        assert f"]({image})" in views, image


@pytest.mark.parametrize("page", [*PAGES, ROOT / "CONTRIBUTING.md"], ids=name)
def test_the_test_files_named_exist(page: Path) -> None:
    """Pages name test files without their folder (they move between folders as the suite is
    refiled); each must exist somewhere under tests/, and a named test function in it."""
    files = {p.name: p for p in (ROOT / "tests").rglob("test*.py")}
    for file, _, function in re.findall(r"\b(test_\w+\.py)(::(test_\w+))?", page.read_text()):
        assert file in files, f"{name(page)}: no {file} under tests/"
        if function:
            assert f"def {function}(" in files[file].read_text(), f"{name(page)}: {function}"
