"""Durable agents: the entry points a runtime can run, and run again from their journal.

``@dar.agent`` marks a function (sync, or a coroutine function for `AsyncRuntime`) as a
resumable entry point and registers it by its qualified name, so a worker that resumes a
run finds the code again in any process that imported it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from dar.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

_AGENTS: dict[str, Callable[..., Any]] = {}


def agent(fn: F) -> F:
    """Declare a durable agent: ``rt.start(fn, session_id, *args)`` runs it journaled, and
    ``rt.resume()`` runs it again from its journal after a crash or a person's decision.
    Its arguments and what it returns must have a JSON form."""
    name = agent_name(fn)
    known = _AGENTS.get(name)
    # The same name again (a module imported twice, a reload) is the same agent.
    if known is not None and getattr(known, "__module__", None) != getattr(fn, "__module__", None):
        raise ConfigurationError(f"two agents are named {name}")
    _AGENTS[name] = fn
    fn.__dict__["__dar_agent__"] = name
    return fn


def agent_name(fn: Callable[..., Any]) -> str:
    """The name a run records for its agent: module and qualified name."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def agent_of(fn: Callable[..., Any]) -> str:
    """The registered name of an agent; a function not declared with ``@dar.agent`` is a
    configuration error (a resume could not find it)."""
    name = getattr(fn, "__dar_agent__", None)
    if not isinstance(name, str) or name not in _AGENTS:
        raise ConfigurationError(
            f"{getattr(fn, '__qualname__', fn)!r} is not a durable agent: "
            "declare it with @dar.agent"
        )
    return name


def registered(name: str) -> Callable[..., Any] | None:
    """The agent a run names, if this process has imported it."""
    return _AGENTS.get(name)
