"""`dar.integrations.mcp.serve`: a runtime's own tools as an MCP server."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult

ROOT = Path(__file__).resolve().parents[2]


PY = sys.executable


LIMIT = 40.0  # seconds any one test may take, whatever hangs


def environ(effects: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "python"), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "DAR_TEST_EFFECTS": str(effects)}


def effects(path: Path) -> list[str]:
    """What the upstream did, in order (its start-up lines aside)."""
    if not path.exists():
        return []
    return [x for x in path.read_text().splitlines() if not x.startswith("pid ")]


def status(result: CallToolResult) -> str:
    assert result.meta is not None
    return str(result.meta["dar/status"])


def text(result: CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(LIMIT):
            await main()

    anyio.run(bounded)


def test_serve_lists_annotations_and_runs_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'agent.db'}"
    eff = tmp_path / "effects.txt"
    served = ROOT / "tests" / "support" / "mcp_servers" / "served.py"
    params = StdioServerParameters(command=PY, args=[str(served), db], env=environ(eff))

    async def main() -> None:
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as agent,
        ):
            await agent.initialize()
            listed = {t.name: t for t in (await agent.list_tools()).tools}
            invoice = listed["send_invoice"]
            assert invoice.description == "Send an invoice to a customer."
            assert invoice.input_schema["required"] == ["customer", "cents"]
            assert invoice.annotations is not None
            assert invoice.annotations.idempotent_hint and invoice.annotations.open_world_hint
            assert not invoice.annotations.read_only_hint
            balance = listed["balance"].annotations
            assert balance is not None and balance.read_only_hint
            args = {"customer": "acme", "cents": 900}
            first = await agent.call_tool("send_invoice", args)
            again = await agent.call_tool("send_invoice", args)
            assert (status(first), status(again)) == ("executed", "cached")
            assert first.structured_content == {"invoice": "INV-acme", "cents": 900}
            assert text(first) == text(again)
            bad = await agent.call_tool("send_invoice", {"customer": "acme"})
            assert bad.is_error and status(bad) == "rejected" and "cents" in text(bad)

    run(main)
    assert effects(eff) == ["send_invoice acme 900"]
