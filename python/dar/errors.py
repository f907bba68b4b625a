"""Exceptions of `dar`, defined once here and raised from both Python and the Rust core."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dar.audit.replay import RecordedCall


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


class ModeError(DarError):
    """A runtime in a replay or a dry run was asked for something that would write to the
    store or run a handler: nothing but the replayed record or the plan may."""


class ReplayDivergence(DarError):
    """The agent's code made a different call than the recorded session did."""

    def __init__(
        self, index: int, expected: RecordedCall | None, tool: str, input_hash: str | None
    ) -> None:
        self.index, self.expected, self.tool, self.input_hash = index, expected, tool, input_hash
        if expected is None:
            what = f"the record has only {index} calls; call #{index + 1} is {tool}"
        elif expected.tool != tool:
            what = f"call #{index + 1} is {tool}, the record has {expected.tool}"
        else:
            what = (
                f"call #{index + 1} to {tool} has input hash {input_hash}, "
                f"the record has {expected.input_hash}"
            )
        super().__init__(f"replay diverged: {what}")

    @classmethod
    def of_step(cls, index: int, recorded: str, asked: str) -> ReplayDivergence:
        """A durable run's step ``index`` was recorded with one request and is asked now
        with another: the agent's code changed between the crash and the resume."""
        made = cls.__new__(cls)
        made.index, made.expected, made.tool, made.input_hash = index, None, asked, None
        DarError.__init__(
            made,
            f"replay diverged at step {index} of the run: the journal has {recorded[:300]}; "
            f"asked now: {asked[:300]}",
        )
        return made
