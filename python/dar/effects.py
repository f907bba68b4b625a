"""What a tool does to the world, and what a call's outcome was.

The effect decides how strict the runtime is: a `read` runs every time; everything else
runs at most once per key and window; `mutate-external` and `irreversible` are never run
again blindly after a crash.
"""

from __future__ import annotations

import enum


class Effect(str, enum.Enum):
    """The side effect a tool has; declared on every tool, never defaulted."""

    READ = "read"
    MUTATE_LOCAL = "mutate-local"
    MUTATE_EXTERNAL = "mutate-external"
    IRREVERSIBLE = "irreversible"

    @property
    def idempotent(self) -> bool:
        """Whether calls are deduplicated by key (every effect but `read`)."""
        return self is not Effect.READ

    @property
    def blind_retry_safe(self) -> bool:
        """Whether a call whose worker died may simply run again."""
        return self in (Effect.READ, Effect.MUTATE_LOCAL)

    def __str__(self) -> str:
        return self.value


class Status(str, enum.Enum):
    """How a call ended. A `str` enum, so `result.status == "rejected"` works."""

    EXECUTED = "executed"
    CACHED = "cached"
    REJECTED = "rejected"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    CONFLICT = "conflict"
    INDETERMINATE = "indeterminate"
    CANCELLED = "cancelled"  # the handler was interrupted; the caller got the exception
    AWAITING_APPROVAL = "awaiting_approval"  # a person must approve this exact call first
    PLANNED = "planned"  # a dry run: everything but the effect; ``output`` is the preview
    STALE = "stale"  # a plan committed after something it depended on moved: nothing ran

    def __str__(self) -> str:
        return self.value
