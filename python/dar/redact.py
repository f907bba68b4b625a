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
            return self.fn(value), []
        removed: list[str] = []
        for path in self.paths:
            value = self._walk(value, path, salt, removed)
        return _scrub_leaves(value, removed, salt), removed

    def apply_output(self, value: Any, salt: str, removed: list[str]) -> Any:
        """A redacted copy of the output: its own paths, then every removed value."""
        if self.fn is not None:
            return self.fn(value)
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


def _leaves(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _leaves(v, out)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 3:  # shorter texts would scrub unrelated words from messages
            out.append(text)


def _scrub_leaves(value: Any, removed: list[str], salt: str) -> Any:
    if not removed:
        return value
    if isinstance(value, str):
        return scrub(value, removed, salt)
    if isinstance(value, dict):
        return {k: _scrub_leaves(v, removed, salt) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_leaves(v, removed, salt) for v in value]
    return value


def scrub(text: str | None, removed: list[str], salt: str) -> str | None:
    """Replace redacted values that a message quotes (a rule's reason, an error)."""
    if text is None or not removed:
        return text
    for raw in sorted(set(removed), key=len, reverse=True):
        text = text.replace(raw, marker(salt, raw))
    return text
