"""An application for `dar runs resume --app`: the support agent of `tests.support.runs`
with its runtime, on the database of ``DAR_TEST_DB`` (handlers mark into
``DAR_TEST_MARKS``). The forms ``--app`` takes: a runtime (``rt``, ``art``), a factory
with no argument (``app``, ``async_app``), a factory of the ``--db`` URL (``app_at``)."""

from __future__ import annotations

import os
from typing import Any

from dar import AsyncRuntime, Runtime
from tests.support import runs as R


def app() -> Runtime:
    return app_at(os.environ["DAR_TEST_DB"])


def app_at(url: str) -> Runtime:
    rt = Runtime(url, tools=R.TOOLS, rules=[R.refund_limit])
    R.install(rt)
    return rt


def async_app() -> AsyncRuntime:
    art = AsyncRuntime(
        os.environ["DAR_TEST_DB"], tools=[*R.TOOLS, *R.ASYNC_TOOLS], rules=[R.refund_limit]
    )
    R.install(art)
    return art


not_a_runtime = 42


def __getattr__(name: str) -> Any:
    """``rt`` and ``art``: runtimes made when the command asks for them."""
    if name == "rt":
        return app()
    if name == "art":
        return async_app()
    raise AttributeError(name)
