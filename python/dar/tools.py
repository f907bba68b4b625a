"""Tools: a handler plus the effect it declares and how its calls are keyed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from dar.effects import Effect
from dar.redact import Redactor, RedactSpec

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_LEASE = 300.0


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Returned by a `reconcile` function: did the effect of a crashed call happen?

    `Reconciled(executed=True, output=...)` records the call as done with that output;
    `Reconciled(executed=False)` releases the key so the call runs again.
    """

    executed: bool
    output: Any = None


@dataclass(frozen=True, eq=False)
class Tool(Generic[F]):
    """A function the agent may call, wrapped with its effect and idempotency settings."""

    name: str
    handler: F
    effect: Effect
    key: Callable[[Mapping[str, Any]], str] | None = None
    window: float | None = None
    lease: float = DEFAULT_LEASE
    reconcile: Callable[..., Any] | None = None
    keep_failures: bool = False
    redact: RedactSpec = None

    @cached_property
    def redactor(self) -> Redactor | None:
        """The compiled ``redact`` declaration, or None when nothing is personal."""
        return Redactor(self.redact) if self.redact else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the bare handler, outside the runtime (for tests of the handler itself)."""
        return self.handler(*args, **kwargs)


def tool(
    name: str | None = None,
    *,
    effect: Effect | str,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    window: float | None = None,
    lease: float = DEFAULT_LEASE,
    reconcile: Callable[..., Any] | None = None,
    keep_failures: bool = False,
    redact: RedactSpec = None,
) -> Callable[[F], Tool[F]]:
    """Declare a tool. ``effect`` is required: the runtime's strictness follows from it.

    >>> @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"sms:{i['to']}", window=3600)
    ... def send_sms(to: str, text: str) -> dict: ...

    ``key`` derives the idempotency key from the input (default ``"{name}:{input_hash}"``);
    ``window`` is how many seconds a completed key answers from the record (None: forever);
    ``lease`` bounds how long a call may run before it is presumed crashed; ``reconcile``
    is called with the input of a crashed ``mutate-external``/``irreversible`` call and
    returns a ``Reconciled``; ``keep_failures`` makes failures answer from the record too.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError("tool() takes the tool's name, not the function: use @tool(effect=...)")
    eff = Effect(effect)
    if window is not None and window <= 0:
        raise ValueError("window must be positive seconds, or None for forever")
    if lease <= 0:
        raise ValueError("lease must be positive seconds")

    def wrap(fn: F) -> Tool[F]:
        return Tool(
            name=name or fn.__name__,
            handler=fn,
            effect=eff,
            key=key,
            window=window,
            lease=lease,
            reconcile=reconcile,
            keep_failures=keep_failures,
            redact=redact,
        )

    return wrap
