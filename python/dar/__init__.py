"""durable-agent-runtime: rules, idempotency and an event log around every agent tool call."""

from __future__ import annotations

from dar._core import (
    MAX_DEPTH,
    canonical_json,
    canonical_json_from_text,
    input_hash,
    input_hash_from_text,
    input_hashes,
    input_hashes_from_texts,
)
from dar.agents import agent
from dar.context import CallInfo, current_call, session
from dar.core.dryrun import Plan
from dar.effects import Effect, Status
from dar.errors import (
    CanonicalizationError,
    ConfigurationError,
    DarError,
    ReplayDivergence,
    StoreError,
)
from dar.guards import Budget, Similar
from dar.records import Approval, Event, Result, RunRecord, RunResult
from dar.reply import ModelReply
from dar.rules import Allow, Deny, NeedsApproval, Rule, RuleContext, rule
from dar.runtime.aio import AsyncRuntime
from dar.runtime.journal import step
from dar.runtime.sync import Runtime
from dar.store import SQLiteStore, Store
from dar.tools import Reconciled, Tool, tool

__version__ = "0.1.0"

__all__ = [
    "MAX_DEPTH",
    "Allow",
    "Approval",
    "AsyncRuntime",
    "Budget",
    "CallInfo",
    "CanonicalizationError",
    "ConfigurationError",
    "DarError",
    "Deny",
    "Effect",
    "Event",
    "ModelReply",
    "NeedsApproval",
    "Plan",
    "Reconciled",
    "ReplayDivergence",
    "Result",
    "Rule",
    "RuleContext",
    "RunRecord",
    "RunResult",
    "Runtime",
    "SQLiteStore",
    "Similar",
    "Status",
    "Store",
    "StoreError",
    "Tool",
    "__version__",
    "agent",
    "canonical_json",
    "canonical_json_from_text",
    "current_call",
    "input_hash",
    "input_hash_from_text",
    "input_hashes",
    "input_hashes_from_texts",
    "rule",
    "session",
    "step",
    "tool",
]
