"""What the model reads about a call: one agreed wording per status.

Short, in the model's terms, and the same for an executed call and its answer from the
record, so a retried turn reads exactly what the first one did. Only text the log already
holds goes in (reasons and errors are scrubbed of personal values, outputs are the recorded
form), so a redacted value never reaches the model through this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dar.effects import Status

if TYPE_CHECKING:
    from dar.records import Result


@dataclass(frozen=True, slots=True)
class ModelReply:
    """A tool result in the model's terms: the text to send back, and whether it is an
    error (``is_error`` on Anthropic and MCP; OpenAI and Gemini take the text alone)."""

    text: str
    is_error: bool


def reply_for(result: Result) -> ModelReply:
    """The model's view of ``result``."""
    status = result.status
    if status is Status.PLANNED:
        preview = result.output_json or "no preview"
        return ModelReply(
            f"Dry run, nothing was done. It would: {result.reason}. Preview: {preview}", False
        )
    if status in (Status.EXECUTED, Status.CACHED):
        edited = edit_note(result)
        if edited is not None and result.output_json is not None:
            return ModelReply(f"{edited} Result: {result.output_json}", False)
        if result.output_json is not None:
            return ModelReply(result.output_json, False)
        why = result.error or result.reason
        return ModelReply(f"The tool ran, but its output could not be recorded ({why}).", False)
    return ModelReply(_WORDING[status](result), True)


def edit_note(result: Result) -> str | None:
    """What the model must know of a call a person approved with other arguments: that it
    ran on theirs, and what changed (None for any other call)."""
    edited = result.extra.get("edited")
    if edited is None:
        return None
    return (
        f"A person ({edited['by']}) approved this call with an edit and it ran with their "
        f"arguments instead ({edited['changes']})."
    )


def _rejected(r: Result) -> str:
    by = f" by the rule {r.rule}" if r.rule else ""
    return (
        f"Refused{by}: {r.reason}. Nothing was done. Calling this tool again with the same "
        "arguments will be refused again."
    )


def _failed(r: Result) -> str:
    then = (
        "Calling again with the same arguments will run the tool again."
        if r.retryable
        else "Calling again with the same arguments returns this same failure."
    )
    return f"The tool failed: {r.error}. {then}"


def _in_progress(r: Result) -> str:
    return (
        "An identical call is still running. Call again later with the same arguments to get "
        "its result; do not change them."
    )


def _conflict(r: Result) -> str:
    return (
        f"Not run: {r.reason}. The idempotency key belongs to that first call; use the same "
        "arguments to get its result, or a new key for a new action."
    )


def _indeterminate(r: Result) -> str:
    return (
        "Unknown whether an identical earlier call took effect (it was interrupted mid-way). "
        "An operator must decide; do not retry or rephrase this call."
    )


def _cancelled(r: Result) -> str:
    return "The call was cancelled before it finished; whether it took effect is being checked."


def _awaiting_approval(r: Result) -> str:
    return (
        f"Waiting for a person to approve this exact call ({r.reason}). Nothing was done yet. "
        "Do not repeat or rephrase it; tell the user it needs approval. Once approved, the "
        "same call with the same arguments runs once."
    )


def _stale(r: Result) -> str:
    return f"Not run: the plan is stale ({r.reason}). Plan the call again."


_WORDING = {
    Status.REJECTED: _rejected,
    Status.FAILED: _failed,
    Status.IN_PROGRESS: _in_progress,
    Status.CONFLICT: _conflict,
    Status.INDETERMINATE: _indeterminate,
    Status.CANCELLED: _cancelled,
    Status.AWAITING_APPROVAL: _awaiting_approval,
    Status.STALE: _stale,
}
_OWN = {Status.EXECUTED, Status.CACHED, Status.PLANNED}
assert set(_WORDING) | _OWN == set(Status), "a wording per status"
