"""`diff`: two sessions compared call by call, in Python and from `dar diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dar.cli.main import main
from dar.store import open_store
from dar.views.sessions import INPUT, SAME, STATUS, diff, load_session
from tests.support.views_data import build


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views") / "views.db"
    build(path)
    return path


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def test_diff_classifies_pairs(db: Path) -> None:
    store = open_store(url(db))
    try:
        pairs = diff(load_session(store, "a"), load_session(store, "b"))
    finally:
        store.close()
    assert [(p.kind, p.a and p.a.tool, p.b and p.b.tool) for p in pairs] == [
        (SAME, "lookup", "lookup"),
        (INPUT, "send", "send"),
        (STATUS, "send", "send"),
    ]
    assert (pairs[2].a and pairs[2].a.status, pairs[2].b and pairs[2].b.status) == (
        "executed",
        "cached",
    )


def test_diff_command(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "a", "b", "--db", url(db), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in out["pairs"]] == ["same", "different input", "different status"]
    assert out["counts"]["same"] == 1 and out["pairs"][1]["b"]["input"]["text"] == "good bye"
    assert main(["diff", "a", "s-1", "--db", url(db)]) == 1
    text = capsys.readouterr().out
    assert "only in B" in text and "different input" in text
    assert main(["diff", "a", "a", "--db", url(db)]) == 0
    assert main(["diff", "a", "nope", "--db", url(db)]) == 2  # no such session: an error
