"""What an approval is bound to, so a person's yes covers one exact call and nothing else.

A grant binds the tool, the canonical input hash, the idempotency key and a fingerprint of
the rules in force. Change any of them (other arguments, a sibling tool, an edited rule)
and the binding no longer matches: the call asks again, it never runs on an old yes.
With ``DAR_APPROVAL_SECRET`` set, a grant also carries an HMAC over its binding, so a
worker can check it without trusting the database row.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import marshal
from collections.abc import Iterable
from typing import Any

from dar._core import canonical_json, sha256_hex_of
from dar.records import Approval
from dar.rules import NeedsApproval, Rule

ALWAYS_ASK = "approval"


def always_ask(tool_name: str) -> Rule:
    """The rule behind ``tool(approval=True)``: every call of the tool asks a person."""

    def ask(inp: dict[str, Any], ctx: Any) -> NeedsApproval:
        return NeedsApproval(f"every call of {tool_name} needs a person's approval")

    return Rule(name=ALWAYS_ASK, check=ask, applies_to=tool_name)


def _rule_identity(rule: Rule) -> list[Any]:
    """A rule's name, target, and everything its check depends on that can change between
    two deployments: its code and the values it reads (closures, defaults, a partial's
    arguments, a bound method's object, module-level constants it names). Editing the
    check or a threshold it reads changes the fingerprint; it is the same in every process."""
    body = sha256_hex_of(canonical_json(_identity(rule.check, depth=0)))
    target = rule.applies_to
    target_text = target.value if hasattr(target, "value") else target
    return [rule.name, target_text if isinstance(target_text, str) else list(target_text), body]


#: How deep `_identity` follows objects into objects (a policy holding a table of limits).
DEPTH = 4


def _identity(value: Any, depth: int) -> Any:
    """A JSON description of ``value`` that changes when what it computes can change."""
    try:
        canonical_json(value)
        return value
    except Exception:
        pass
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    if depth > DEPTH:
        return f"<{name}>"
    if isinstance(value, functools.partial):
        return [
            "partial",
            _identity(value.func, depth + 1),
            [_identity(a, depth + 1) for a in value.args],
            {k: _identity(v, depth + 1) for k, v in sorted(value.keywords.items())},
        ]
    if inspect.ismethod(value):  # a bound method: its function and its object's state
        return ["method", _identity(value.__func__, depth + 1), _state(value.__self__, depth)]
    if inspect.isfunction(value):
        return _function(value, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_identity(v, depth + 1) for v in value]
        return [name, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items]
    if isinstance(value, dict):
        return [
            name,
            [[_identity(k, depth + 1), _identity(v, depth + 1)] for k, v in value.items()],
        ]
    if callable(value) and not isinstance(value, type):  # an object with __call__
        return ["callable", _function(type(value).__call__, depth), _state(value, depth)]
    return _state(value, depth)


def _function(fn: Any, depth: int) -> Any:
    code = getattr(fn, "__code__", None)
    if code is None:  # a builtin: its name is all there is
        return f"<{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}>"
    captured = [c.cell_contents for c in fn.__closure__ or ()]
    captured += list(fn.__defaults__ or ())
    captured += [v for _k, v in sorted((fn.__kwdefaults__ or {}).items())]
    captured += [v for _k, v in sorted(getattr(fn, "__dict__", {}).items())]
    named = {n: fn.__globals__[n] for n in _names(code) if n in fn.__globals__}
    constants = {n: v for n, v in sorted(named.items()) if _scalar(v)}
    return [
        fn.__qualname__,
        hashlib.sha256(marshal.dumps(code)).hexdigest(),
        [_identity(v, depth + 1) for v in captured],
        constants,
    ]


def _names(code: Any) -> set[str]:
    """The global names a function's code (and the code nested in it) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def _scalar(value: Any) -> bool:
    """A module-level constant a check may read (``LIMIT = 500``). Containers are left out:
    a module-level cache that changes as the program runs would void every grant."""
    return value is None or isinstance(value, (str, int, float, bool))


def _state(obj: Any, depth: int) -> Any:
    """An object's type and attributes (``__dict__`` and ``__slots__``); an object whose
    state lives outside Python (a C extension type) is known by its type only."""
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    attrs: dict[str, Any] = dict(getattr(obj, "__dict__", {}) or {})
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot) and slot not in attrs:
                attrs[slot] = getattr(obj, slot)
    return [name, {k: _identity(v, depth + 1) for k, v in sorted(attrs.items())}]


def fingerprint(rules: Iterable[Rule]) -> str:
    """The rules in force for a call, as one hash."""
    return sha256_hex_of(canonical_json([_rule_identity(r) for r in rules]))


def binding(tool_name: str, input_hash: str, key: str | None, rules_fingerprint: str) -> str:
    """The one call an approval is for."""
    return sha256_hex_of(canonical_json([tool_name, input_hash, key, rules_fingerprint]))


def signature(
    secret: str,
    approval_id: str,
    bound: str,
    expires_at: float | None,
    edited_hash: str | None = None,
) -> str:
    """HMAC-SHA256 of a grant: its id, binding and expiry, and the hash of the arguments a
    person edited it to (so an edit written into the database by hand is not usable)."""
    signed: list[Any] = [approval_id, bound, expires_at]
    if edited_hash is not None:
        signed.append(edited_hash)
    message = canonical_json(signed)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_by(secret: str, grant: Approval) -> bool:
    """Whether ``grant`` was signed with ``secret`` for exactly its binding, expiry and
    edit."""
    expected = signature(
        secret, grant.approval_id, grant.binding, grant.expires_at, grant.edited_hash
    )
    return grant.signature is not None and hmac.compare_digest(expected, grant.signature)
