"""Fixtures of the runtime tests: a runtime with the typed tools, and their run counts
reset before each test."""

from __future__ import annotations

import pytest

from dar import Runtime
from tests.support.calls import MakeRuntime
from tests.support.typed_tools import TOOLS, covers_zone, runs


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime(tools=TOOLS, rules=[covers_zone])
