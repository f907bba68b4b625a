"""What the `dar` command prints is safe for the operator's terminal.

The log holds whatever tools, models and users wrote into it; an escape sequence in a tool
name or a refusal reason (a title change, a screen clear, an OSC 52 clipboard write) must
reach the screen as visible text, never as a command to the terminal.

It sits with the vocabulary, below every layer, because both sides that print foreign text
need it and neither may import the other: the views and the `dar` command print the log,
and `dar mcp-proxy` prints what an upstream server says about itself. It is pure string
work (no I/O, no decision), so it belongs neither to a view nor to the core.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from dar.records import Event

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_C1 = re.compile("[\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe(text: str) -> str:
    """``text`` with every control character (newlines too) written as ``\\xNN``."""
    return _CONTROL.sub(_visible, text)


def safe_value(value: Any) -> Any:
    """A JSON value with every string (and member name) made safe."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {safe(str(k)): safe_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_value(v) for v in value]
    return value


def safe_event(ev: Event) -> Event:
    """An event whose every text field is safe to print."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(ev):
        value = getattr(ev, f.name)
        if isinstance(value, (str, dict, list)):
            changes[f.name] = safe_value(value)
    return dataclasses.replace(ev, **changes)


def safe_json(value: Any, **kwargs: Any) -> str:
    """JSON text for a terminal: C0 controls are escaped by JSON itself, C1 controls here."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
