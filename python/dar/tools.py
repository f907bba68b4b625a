"""Tools: a handler plus the effect it declares and how its calls are keyed."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar

from dar.effects import Effect
from dar.errors import ConfigurationError
from dar.guards import SESSION, Budget, Guard, Similar
from dar.redact import Redactor, RedactSpec
from dar.signature import Signature, read_signature

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_LEASE = 300.0
#: How long a completed `mutate-*` key answers from the record unless told otherwise: a
#: day, as payment APIs keep idempotency keys. `irreversible` keys answer forever.
DEFAULT_WINDOW = 24 * 3600.0

Scope = Literal["global", "session"]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


def default_window(effect: Effect) -> float | None:
    """The window a tool of this effect gets when it names none."""
    return None if effect in (Effect.IRREVERSIBLE, Effect.READ) else DEFAULT_WINDOW


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
    scope: Scope = "global"
    coerce: bool = False
    description: str | None = None
    approval: bool = False
    simulate: Callable[..., Any] | None = None
    compensate: Tool[Any] | None = None
    compensate_input: Callable[[Any, Any], Any] | None = None
    timeout: float | None = None
    guards: tuple[Guard, ...] = ()

    def __post_init__(self) -> None:
        check_tool_name(self.name)
        check_timeout(self.name, self.timeout)
        check_guards(self.name, self.guards)

    @property
    def similar(self) -> bool:
        """Whether a guard of this tool compares texts (and so needs an embedder)."""
        return any(isinstance(g, Similar) for g in self.guards)

    @cached_property
    def redactor(self) -> Redactor | None:
        """The compiled ``redact`` declaration, or None when nothing is personal."""
        return Redactor(self.redact) if self.redact else None

    @cached_property
    def signature(self) -> Signature:
        """The handler's arguments and return type, read once."""
        return read_signature(self.handler, self.name, coerce=self.coerce)

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema (2020-12) of the arguments: the same model that validates them."""
        schema = self.signature.schema()
        if self.description is not None:
            schema["description"] = self.description
        return schema

    @property
    def summary(self) -> str:
        """What the model is told the tool does: ``description=``, else the docstring."""
        if self.description is not None:
            return self.description
        return self.signature.description

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the bare handler, outside the runtime (for tests of the handler itself)."""
        return self.handler(*args, **kwargs)


def check_tool_name(name: object) -> None:
    """A tool's name goes to models and into the log: a non-empty str every store can hold
    (no NUL, no lone surrogate). Other control characters are the views' business: every
    text from the log is sanitized before it reaches a terminal."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a tool's name must be a non-empty str, not {name!r}")
    bad = next((i for i, c in enumerate(name) if c == "\x00" or "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise ConfigurationError(
            f"tool name {name!r} has a character no log can store ({name[bad]!r} at index {bad})"
        )


def check_timeout(tool_name: str, timeout: object) -> None:
    """A handler's time limit is a positive, finite number of seconds (or None: none)."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ConfigurationError(
            f"tool {tool_name!r}: timeout must be a positive number of seconds, not {timeout!r}"
        )


def check_guards(tool_name: str, guards: tuple[Guard, ...]) -> None:
    """Guards are `Budget`/`Similar` objects, each named once per tool."""
    names: set[str] = set()
    for g in guards:
        if not isinstance(g, (Budget, Similar)):
            raise ConfigurationError(
                f"tool {tool_name!r}: guards= takes Budget(...) and Similar(...), not {g!r}"
            )
        if g.name in names:
            raise ConfigurationError(f"tool {tool_name!r}: the guard {g.name} is given twice")
        names.add(g.name)


def check_guard_fields(made: Tool[Any]) -> None:
    """A guard reads fields of the tool's arguments: each must be one of them."""
    known = set(made.signature.names)
    for g in made.guards:
        for name in g.fields:
            if name not in known and name != SESSION:
                raise ConfigurationError(
                    f"tool {made.name!r}: {g.name} reads $.{name}, which is not one of its "
                    f"arguments ({', '.join(sorted(known)) or 'none'})"
                )


def tool(
    name: str | None = None,
    *,
    effect: Effect | str,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    window: float | None = DEFAULT,
    lease: float = DEFAULT_LEASE,
    reconcile: Callable[..., Any] | None = None,
    keep_failures: bool = False,
    redact: RedactSpec = None,
    scope: Scope = "global",
    coerce: bool = False,
    description: str | None = None,
    approval: bool = False,
    simulate: Callable[..., Any] | None = None,
    compensate: Tool[Any] | None = None,
    compensate_input: Callable[[Any, Any], Any] | None = None,
    timeout: float | None = None,
    guards: list[Guard] | tuple[Guard, ...] = (),
) -> Callable[[F], Tool[F]]:
    """Declare a tool. ``effect`` is required: the runtime's strictness follows from it.

    >>> @tool(effect=Effect.MUTATE_EXTERNAL, key=lambda i: f"sms:{i['to']}", window=3600)
    ... def send_sms(to: str, text: str) -> dict: ...

    The handler's signature is the arguments' schema: calls are validated against its type
    hints (strictly, as JSON; ``coerce=True`` for pydantic's lax mode, and then the key is
    computed on the coerced arguments), and its docstring describes the tool to the model
    (``description=`` overrides it).

    ``key`` derives the idempotency key from the input (default ``"{name}:{input_hash}"``;
    ``scope="session"`` adds the call's correlation id to that default);
    ``window`` is how many seconds a completed key answers from the record (default: 24 h
    for ``mutate-*``, forever for ``irreversible``; None: forever);
    ``lease`` bounds how long a call may run before it is presumed crashed; ``reconcile``
    is called with the input of a crashed ``mutate-external``/``irreversible`` call and
    returns a ``Reconciled``; ``keep_failures`` makes failures answer from the record too;
    ``approval=True`` sends every call to a person first (a rule that always asks);
    ``simulate`` is called with the arguments in a dry run (`Runtime.plan`) and returns a
    preview of what the call would do; it must have no effects; ``compensate`` is the
    tool that undoes a call inside a saga (called with the same arguments, or with
    ``compensate_input(input, output)``); ``timeout`` is how many seconds the handler may
    run: one still running then makes the call ``indeterminate`` (``failed`` for a
    ``read``), and a sync handler's thread is left to finish on its own; ``guards`` are
    `dar.Budget` and `dar.Similar` limits judged against the tool's earlier calls.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError("tool() takes the tool's name, not the function: use @tool(effect=...)")
    eff = Effect(effect)
    if window is DEFAULT:
        window = default_window(eff)
    if window is not None and window <= 0:
        raise ValueError("window must be positive seconds, or None for forever")
    if lease <= 0:
        raise ValueError("lease must be positive seconds")
    if compensate is not None and not isinstance(compensate, Tool):
        raise ConfigurationError("compensate= takes a Tool (decorate the undo with @tool)")
    if scope not in ("global", "session"):
        raise ConfigurationError(f"scope must be 'global' or 'session', not {scope!r}")

    def wrap(fn: F) -> Tool[F]:
        made = Tool(
            name=name or fn.__name__,
            handler=fn,
            effect=eff,
            key=key,
            window=window,
            lease=lease,
            reconcile=reconcile,
            keep_failures=keep_failures,
            redact=redact,
            scope=scope,
            coerce=coerce,
            description=description,
            approval=approval,
            simulate=simulate,
            compensate=compensate,
            compensate_input=compensate_input,
            timeout=timeout,
            guards=tuple(guards),
        )
        # Read now, so a type that cannot be validated fails here, not mid-call; with the
        # caller's locals, so a type defined in the enclosing function resolves too.
        localns = sys._getframe(1).f_locals
        made.__dict__["signature"] = read_signature(fn, made.name, coerce=coerce, localns=localns)
        check_guard_fields(made)
        return made

    return wrap
