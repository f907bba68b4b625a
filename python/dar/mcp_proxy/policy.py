"""The policy of `dar mcp-proxy`: which effect each upstream tool has, and which rules judge it.

The upstream server's annotations are hints anyone can write, so the effect a proxied tool
gets is decided here, locally, and fails closed. The policy is a plain Python file, the
same `@rule` functions as everywhere::

    effects = {"get_*": "read", "create_issue": "mutate-external"}
    rules = [no_deletes_on_main]
    keys = {"send_email": lambda args: f"email:{args['to']}:{args['subject']}"}
    windows = {"create_issue": 3600}
    redact = {"send_email": ["to"]}
    guards = {"send_email": [Similar("body", same=("to",), within="10m")]}
    trust_annotations = ["github"]  # or True / False (default)

Names in ``effects``, ``keys``, ``windows``, ``redact`` and ``guards`` may be globs
(`fnmatch`): an exact name wins, else the first pattern that matches, in the file's order.
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dar.effects import Effect
from dar.errors import ConfigurationError
from dar.guards import Budget, Guard, Similar
from dar.redact import Redactor, RedactSpec
from dar.rules import Rule

T = TypeVar("T")

KeyFn = Callable[[Mapping[str, Any]], str]

#: The names a policy file may define; anything else in it is the file's own business.
NAMES = ("effects", "rules", "keys", "windows", "redact", "guards", "trust_annotations")
#: Rule names the proxy keeps for its own rules.
RESERVED = "dar-proxy:"


class PolicyError(ConfigurationError):
    """A policy file that cannot be used (the proxy keeps the one it had)."""


@dataclass(frozen=True)
class Hints:
    """The annotations an upstream server put on a tool (None: absent)."""

    read_only: bool | None = None
    destructive: bool | None = None


@dataclass(frozen=True)
class Decision:
    """The effect a tool gets, and why (shown by `--check` and in refusals)."""

    effect: Effect
    why: str


@dataclass(frozen=True)
class Policy:
    """A loaded policy file. The empty policy trusts nothing: every tool is at least
    ``mutate-external``, and irreversible ones are refused until a rule is written."""

    effects: Mapping[str, Effect] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    keys: Mapping[str, KeyFn] = field(default_factory=dict)
    windows: Mapping[str, float | None] = field(default_factory=dict)
    redact: Mapping[str, RedactSpec] = field(default_factory=dict)
    guards: Mapping[str, tuple[Guard, ...]] = field(default_factory=dict)
    trust_annotations: bool | frozenset[str] = False
    path: str | None = None

    def trusts(self, server: str) -> bool:
        """Whether the annotations of the server named ``server`` may lower an effect."""
        if isinstance(self.trust_annotations, bool):
            return self.trust_annotations
        return server in self.trust_annotations

    def decide(self, tool: str, hints: Hints, server: str) -> Decision:
        """The effect of ``tool``: the policy's, else from the hints, failing closed."""
        found = lookup(self.effects, tool)
        if found is not None:
            pattern, effect = found
            return Decision(effect, f"policy effects[{pattern!r}]")
        trusted = self.trusts(server)
        if hints.read_only is True and trusted:
            return Decision(Effect.READ, "readOnlyHint from a trusted server")
        ignored = " (readOnlyHint ignored: server not trusted)" if hints.read_only else ""
        if hints.destructive is False:
            return Decision(Effect.MUTATE_EXTERNAL, "destructiveHint false" + ignored)
        said = "destructiveHint true" if hints.destructive else "no destructiveHint"
        return Decision(Effect.IRREVERSIBLE, said + ignored)

    def key_for(self, tool: str) -> KeyFn | None:
        found = lookup(self.keys, tool)
        return None if found is None else found[1]

    def window_for(self, tool: str) -> tuple[bool, float | None]:
        """``(named, window)``: whether the policy names a window for ``tool``, and it."""
        found = lookup(self.windows, tool)
        return (False, None) if found is None else (True, found[1])

    def redact_for(self, tool: str) -> RedactSpec:
        found = lookup(self.redact, tool)
        return None if found is None else found[1]

    def guards_for(self, tool: str) -> tuple[Guard, ...]:
        found = lookup(self.guards, tool)
        return () if found is None else found[1]


def lookup(table: Mapping[str, T], name: str) -> tuple[str, T] | None:
    """``(pattern, value)`` for ``name``: an exact entry, else the first glob that matches."""
    if name in table:
        return name, table[name]
    for pattern, value in table.items():
        if fnmatch.fnmatchcase(name, pattern):
            return pattern, value
    return None


def signature(path: Path) -> tuple[int, int] | None:
    """What changes when the file is edited (None: the file is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def load_policy(path: str | Path) -> Policy:
    """Run the policy file and check what it defines. Raises `PolicyError` saying why."""
    shown = str(path)
    try:
        namespace = runpy.run_path(shown, run_name="dar_policy")
    except SyntaxError as exc:
        raise PolicyError(f"{shown}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except OSError as exc:
        raise PolicyError(f"cannot read the policy {shown}: {exc.strerror or exc}") from exc
    except Exception as exc:
        raise PolicyError(f"the policy {shown} raised {type(exc).__name__}: {exc}") from exc
    return policy_from(namespace, shown)


def policy_from(namespace: Mapping[str, Any], path: str | None = None) -> Policy:
    """A `Policy` from the names a policy file defined. Every entry is checked here, also
    what the proxy only uses later (a redact spec compiled at a tool's first call, a key
    function called at each), so that an edit that cannot work is refused at reload and the
    policy in force stays, instead of every call of one tool failing."""
    where = path or "the policy"
    return Policy(
        effects={
            name: _effect(where, name, value)
            for name, value in _table(namespace, "effects", where).items()
        },
        rules=_rules(namespace.get("rules", ()), where),
        keys={
            name: _callable(where, "keys", name, fn)
            for name, fn in _table(namespace, "keys", where).items()
        },
        windows={
            name: _window(where, name, value)
            for name, value in _table(namespace, "windows", where).items()
        },
        redact={
            name: _redact(where, name, spec)
            for name, spec in _table(namespace, "redact", where).items()
        },
        guards={
            name: _guards(where, name, value)
            for name, value in _table(namespace, "guards", where).items()
        },
        trust_annotations=_trust(namespace.get("trust_annotations", False), where),
        path=path,
    )


def _table(namespace: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = namespace.get(name, {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise PolicyError(f"{where}: {name} must be a dict of tool names or globs")
    return value


def _effect(where: str, name: str, value: Any) -> Effect:
    try:
        return Effect(value)
    except ValueError:
        known = ", ".join(e.value for e in Effect)
        raise PolicyError(f"{where}: effects[{name!r}] is {value!r}, not one of: {known}") from None


def _rules(value: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(value, (list, tuple)):
        raise PolicyError(f"{where}: rules must be a list of @rule functions")
    seen: set[str] = set()
    for r in value:
        if not isinstance(r, Rule):
            raise PolicyError(f"{where}: rules holds {r!r}, not a @rule function")
        if r.name in seen:
            raise PolicyError(f"{where}: rules holds two rules named {r.name!r}")
        if r.name.startswith(RESERVED):
            raise PolicyError(f"{where}: rule names starting {RESERVED!r} are the proxy's own")
        if not _takes(r.check, 2):
            raise PolicyError(
                f"{where}: the check of rule {r.name!r} must take (args, ctx), not "
                f"{_shown(r.check)}"
            )
        seen.add(r.name)
    return tuple(value)


def _callable(where: str, table: str, name: str, fn: Any) -> KeyFn:
    if not callable(fn):
        raise PolicyError(f"{where}: {table}[{name!r}] must be a function of the arguments")
    if not _takes(fn, 1):
        raise PolicyError(
            f"{where}: {table}[{name!r}] must take one argument, the call's arguments, not "
            f"{_shown(fn)}"
        )
    key: KeyFn = fn
    return key


def _takes(fn: Any, count: int) -> bool:
    """Whether ``fn`` can be called with ``count`` positional arguments (True when its
    signature cannot be read, as for some builtins)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(*range(count))
    except TypeError:
        return False
    return True


def _shown(fn: Any) -> str:
    try:
        return f"{getattr(fn, '__name__', 'a function')}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def _redact(where: str, name: str, spec: Any) -> RedactSpec:
    """A ``redact`` entry: a list of paths into the input (``"to"``, ``"items.*.name"``) or
    the output (``"output.email"``), or a function returning a redacted copy."""
    entry = f"{where}: redact[{name!r}]"
    if spec is None or callable(spec):
        kept: RedactSpec = spec
        return kept
    if isinstance(spec, str):
        raise PolicyError(
            f"{entry} is {spec!r}: it takes a list of paths (e.g. [{spec!r}]) or a function, "
            "not one string"
        )
    if not isinstance(spec, (list, tuple)):
        raise PolicyError(
            f"{entry} must be a list of paths or a function, not {type(spec).__name__}"
        )
    for path in spec:
        if not isinstance(path, str):
            raise PolicyError(f"{entry} holds {path!r}: a list of paths holds only strings")
        if "" in path.replace("[*]", ".*").split("."):
            raise PolicyError(f"{entry} holds {path!r}: a path has no empty part")
    paths = list(spec)
    try:
        Redactor(paths)  # what each call will compile
    except Exception as exc:
        raise PolicyError(f"{entry} cannot be used: {exc}") from exc
    return paths


def _window(where: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PolicyError(f"{where}: windows[{name!r}] must be positive seconds or None")
    return float(value)


def _guards(where: str, name: str, value: Any) -> tuple[Guard, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(g, (Budget, Similar)) for g in value
    ):
        raise PolicyError(f"{where}: guards[{name!r}] must be a list of Budget(...)/Similar(...)")
    return tuple(value)


def _trust(value: Any, where: str) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise PolicyError(f"{where}: trust_annotations must be True, False or a list of server names")
