"""`dar demo`: the figures the README quotes, and the agent demo through the OpenAI SDK."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from dar.demo.incidents import run_demo


def test_demo_figures(tmp_path: Path) -> None:
    figures = run_demo(tmp_path / "demo.db", Console(file=io.StringIO()))
    assert figures["imports_without"] == 551
    assert figures["imports_with"] == 29
    assert figures["dispatch_Yunguyo"] == "rejected"
    assert figures["dispatch_Juliaca"] == "executed"
    assert figures["message_Llama Market"] == "rejected"
    assert figures["message_Alpaca Textiles"] == "executed"
    assert figures["payments_with"] == [125000]  # approved, then confirmed once
    assert figures["session_events"] == 13
    assert figures["saga_state"] == "compensated"
    assert figures["saga_cancellations"] == 1  # killed mid-rollback, cancelled exactly once


def test_agent_demo_through_the_openai_sdk() -> None:
    from dar.demo.incidents import run_agent_demo

    figures = run_agent_demo(Console(file=io.StringIO()))
    assert figures["without dar"] == (2, 1)  # dispatched twice, one wrong-brand message
    assert figures["with dar"] == (1, 0)
