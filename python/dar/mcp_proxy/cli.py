"""The `dar mcp-proxy` command line. Kept apart from `dar.mcp_proxy.server` so that `dar --help`
works without the `mcp` extra installed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dar.errors import ConfigurationError, DarError
from dar.terminal import safe

if TYPE_CHECKING:
    from dar.mcp_proxy.policy import Decision

EPILOG = """examples:
  dar mcp-proxy --db sqlite:///agent.db --policy policy.py -- npx -y @org/some-mcp-server
  dar mcp-proxy --policy policy.py --upstream-url http://127.0.0.1:9000/mcp --http 127.0.0.1:8000
  dar mcp-proxy --check --policy policy.py -- python my_server.py
"""


def add_proxy_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="Python file with effects = {...}, rules = [...] and optional keys, windows, "
        "redact, trust_annotations; reloaded when it changes (without one every tool is at "
        "least mutate-external and irreversible ones are refused)",
    )
    p.add_argument(
        "--correlation-id-from",
        choices=("meta", "session"),
        default="meta",
        help="meta (default): the request's _meta['dar/correlation_id'] when present, else "
        "the MCP session id; session: always the MCP session id",
    )
    p.add_argument(
        "--upstream-url",
        metavar="URL",
        help="a streamable-HTTP upstream server (instead of -- CMD)",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )
    p.add_argument(
        "--sdk-path",
        action="store_true",
        help="answer tools/call through the MCP SDK's request objects on stdio too, as the "
        "HTTP transport does (slower; the fast path answers the same bytes)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="list the upstream's tools with the effect each gets and the rules that judge "
        "it, then exit",
    )
    p.add_argument(
        "upstream",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARGS...]",
        help="the upstream MCP server to start, speaking stdio",
    )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"--http takes HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def run_proxy(args: argparse.Namespace, db: str) -> int:
    """Run `dar mcp-proxy`; errors go to stderr (stdout may be the MCP stream)."""
    try:
        return _run(args, db)
    except DarError as exc:
        print(f"dar mcp-proxy: error: {safe(str(exc))}", file=sys.stderr)  # may quote upstream
        return 2


def _run(args: argparse.Namespace, db: str) -> int:
    from dar.integrations import require

    require("mcp", "mcp")
    import anyio

    from dar.mcp_proxy.server import Options, check, serve_proxy

    command = list(args.upstream)
    if command[:1] == ["--"]:
        command = command[1:]
    if command and args.upstream_url:
        raise ConfigurationError("give either -- CMD or --upstream-url, not both")
    options = Options(
        db=db,
        policy=Path(args.policy) if args.policy else None,
        correlation_from=args.correlation_id_from,
        command=command,
        upstream_url=args.upstream_url,
        http=_host_port(args.http) if args.http else None,
        fast=not args.sdk_path,
    )
    if args.check:
        rows = anyio.run(check, options)
        _print_check(rows)
        return 0
    anyio.run(serve_proxy, options)
    return 0


def _print_check(rows: Sequence[tuple[str, Decision, list[str]]]) -> None:
    """The table, every cell made safe: a tool's name is whatever the upstream sent, escape
    sequences included, and the operator's terminal must not obey them."""
    cells = [
        (safe(name), decision.effect.value, safe(decision.why), safe(", ".join(rules) or "-"))
        for name, decision, rules in rows
    ]
    width = max((len(name) for name, _, _, _ in cells), default=4)
    print(f"{'tool':<{width}}  {'effect':<15}  {'why':<40}  rules")
    for name, effect, why, rules in cells:
        print(f"{name:<{width}}  {effect:<15}  {why:<40}  {rules}")
