"""Exceptions of `dar`, defined once here and raised from both Python and the Rust core."""

from __future__ import annotations


class DarError(Exception):
    """Base class of every error `dar` raises on purpose."""


class CanonicalizationError(DarError, ValueError):
    """A value has no RFC 8785 canonical JSON form.

    ``path`` is the JSONPath of the offending value (``$.items[3].price``); the message names
    the path and the problem.
    """

    path: str

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[type[CanonicalizationError], tuple[str, str]]:
        return (type(self), (str(self), self.path))


class ConfigurationError(DarError):
    """The runtime, a tool or a rule is set up in a way that cannot run safely."""


class StoreError(DarError):
    """The store failed in a way the runtime could not retry safely."""
