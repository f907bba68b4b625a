"""Keep personal data out of the log: replace declared fields with a salted hash.

A tool declares its personal fields as paths into its input (``"customer.phone"``,
``"address.*"``, ``"items.*.name"``: ``*`` is any member or list element) or its output
(``"output.to"``), or as a function that returns a redacted copy. Matching values are
written to every table as ``"redacted:<hash>"``: SHA-256 over the database's random salt
and the value's canonical JSON. Equal values still look equal in the log, so a postmortem can follow
one customer without seeing their number. A value removed from the input is also replaced
wherever it appears again: inside other strings of the input, in the output, in a refusal
reason or an error. The idempotency key is computed on the full input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from dar._core import canonical_json, sha256_hex_of

RedactSpec = Sequence[str] | Callable[[Any], Any] | None


def marker(salt: str, value: Any) -> str:
    """What a redacted value becomes."""
    try:
        body = canonical_json(value)
    except ValueError:
        body = repr(value).encode("utf-8", "backslashreplace")
    return "redacted:" + sha256_hex_of(salt.encode() + b"\x00" + body)[:32]


class Redactor:
    """Applies one tool's redaction to its inputs and outputs."""

    def __init__(self, spec: RedactSpec) -> None:
        self.fn: Callable[[Any], Any] | None = None
        self.paths: list[list[str]] = []
        self.output_paths: list[list[str]] = []
        if callable(spec):
            self.fn = spec
        elif spec:
            if isinstance(spec, str):
                raise TypeError("redact= takes a list of paths, not one string")
            for p in spec:
                parts = p.replace("[*]", ".*").split(".")
                if parts[0] == "output":
                    self.output_paths.append(parts[1:])
                else:
                    self.paths.append(parts[1:] if parts[0] == "input" else parts)

    def apply(self, value: Any, salt: str) -> tuple[Any, list[str]]:
        """A redacted copy of the input, and the raw texts it removed."""
        if self.fn is not None:
            redacted = self.fn(value)
            # What the function hid: every leaf of the input that its result no longer has.
            kept = set(_all_leaves(redacted))
            removed = [text for text in _all_leaves(value) if text not in kept]
            return _scrub_leaves(redacted, removed, salt), removed
        removed = []
        for path in self.paths:
            value = self._walk(value, path, salt, removed)
        return _scrub_leaves(value, removed, salt), removed

    def apply_output(self, value: Any, salt: str, removed: list[str]) -> Any:
        """A redacted copy of the output: its own paths, then every removed value."""
        if self.fn is not None:
            return _scrub_leaves(self.fn(value), removed, salt)
        for path in self.output_paths:
            value = self._walk(value, path, salt, removed)
        return _scrub_leaves(value, removed, salt)

    def _walk(self, value: Any, path: list[str], salt: str, removed: list[str]) -> Any:
        if not path:
            _leaves(value, removed)
            return marker(salt, value)
        head, rest = path[0], path[1:]
        if isinstance(value, dict):
            if head == "*":
                return {k: self._walk(v, rest, salt, removed) for k, v in value.items()}
            if head in value:
                return {**value, head: self._walk(value[head], rest, salt, removed)}
        elif isinstance(value, (list, tuple)):
            if head == "*":
                return [self._walk(v, rest, salt, removed) for v in value]
            if head.isdigit() and int(head) < len(value):
                i = int(head)
                copy = list(value)
                copy[i] = self._walk(value[i], rest, salt, removed)
                return copy
        return value


def _leaf_text(value: Any) -> str | None:
    """How a scalar leaf reads in JSON (numbers in canonical form), or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        try:
            return canonical_json(value).decode()
        except ValueError:
            return str(value)
    return None


def _leaves(value: Any, out: list[str], *, keys: bool = False) -> None:
    """Every scalar of ``value`` as text (with ``keys``, dict keys too)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if keys:
                out.append(str(k))
            _leaves(v, out, keys=keys)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _leaves(v, out, keys=keys)
    else:
        text = _leaf_text(value)
        if text:
            out.append(text)


def _all_leaves(value: Any) -> list[str]:
    out: list[str] = []
    _leaves(value, out, keys=True)
    return out


def _scrub_leaves(value: Any, removed: list[str], salt: str) -> Any:
    """A copy of ``value`` with every removed value replaced, in keys, strings and numbers."""
    if not removed:
        return value
    if isinstance(value, dict):
        return {
            scrub(str(k), removed, salt): _scrub_leaves(v, removed, salt) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_scrub_leaves(v, removed, salt) for v in value]
    if isinstance(value, str):
        return scrub(value, removed, salt)
    text = _leaf_text(value)
    if text is not None and text in removed:
        return marker(salt, value)
    return value


#: Values shorter than this are replaced in messages only where they stand alone.
SHORT = 4


def _forms(raw: str) -> set[str]:
    """How a value may be spelled inside a message: raw, JSON-escaped, repr-escaped."""
    return {
        raw,
        json.dumps(raw)[1:-1],
        json.dumps(raw, ensure_ascii=False)[1:-1],
        repr(raw)[1:-1],
    }


def scrub(text: str | None, removed: list[str], salt: str) -> str | None:
    """Replace redacted values that a message quotes (a rule's reason, an error)."""
    if text is None or not removed:
        return text
    for raw in sorted(set(removed), key=len, reverse=True):
        if not raw:
            continue
        for form in sorted(_forms(raw), key=len, reverse=True):
            if len(form) >= SHORT:
                text = text.replace(form, marker(salt, raw))
            else:  # a short value: only where it stands alone, not inside other words
                text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", marker(salt, raw), text)
    return text
