"""durable-agent-runtime: rules, idempotency and an event log around every agent tool call."""

from __future__ import annotations

from dar._core import (
    MAX_DEPTH,
    canonical_json,
    canonical_json_from_text,
    input_hash,
    input_hash_from_text,
    input_hashes,
)
from dar.errors import CanonicalizationError, ConfigurationError, DarError, StoreError

__version__ = "0.1.0"

__all__ = [
    "MAX_DEPTH",
    "CanonicalizationError",
    "ConfigurationError",
    "DarError",
    "StoreError",
    "__version__",
    "canonical_json",
    "canonical_json_from_text",
    "input_hash",
    "input_hash_from_text",
    "input_hashes",
]
