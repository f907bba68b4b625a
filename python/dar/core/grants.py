"""What an approval is bound to, so a person's yes covers one exact call and nothing else.

A grant binds the tool, the canonical input hash, the idempotency key and a fingerprint of
the rules in force. Change any of them (other arguments, a sibling tool, an edited rule)
and the binding no longer matches: the call asks again, it never runs on an old yes.
With ``DAR_APPROVAL_SECRET`` set, a grant also carries an HMAC over its binding, so a
worker can check it without trusting the database row.
"""

from __future__ import annotations

import hashlib
import hmac
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
    """A rule's name, target, code and the values its code closes over: editing the check,
    or a threshold it captured, changes its fingerprint. The same in every process."""
    check = rule.check
    fn = check if hasattr(check, "__code__") else type(check).__call__
    code = getattr(fn, "__code__", None)
    parts: list[Any] = [type(check).__qualname__]
    if code is not None:
        parts.append(hashlib.sha256(marshal.dumps(code)).hexdigest())
    captured = [c.cell_contents for c in getattr(check, "__closure__", None) or ()]
    captured += list(getattr(check, "__defaults__", None) or ())
    captured += [v for k, v in sorted(getattr(check, "__dict__", {}).items())]
    parts.append([_stable(v) for v in captured])
    body = sha256_hex_of(canonical_json(parts))
    target = rule.applies_to
    target_text = target.value if hasattr(target, "value") else target
    return [rule.name, target_text if isinstance(target_text, str) else list(target_text), body]


def _stable(value: Any) -> Any:
    """A captured value as it reads in any process: its JSON form, else its type's name
    (an object's repr would carry its address)."""
    try:
        canonical_json(value)
        return value
    except Exception:
        return f"<{type(value).__module__}.{type(value).__qualname__}>"


def fingerprint(rules: Iterable[Rule]) -> str:
    """The rules in force for a call, as one hash."""
    return sha256_hex_of(canonical_json([_rule_identity(r) for r in rules]))


def binding(tool_name: str, input_hash: str, key: str | None, rules_fingerprint: str) -> str:
    """The one call an approval is for."""
    return sha256_hex_of(canonical_json([tool_name, input_hash, key, rules_fingerprint]))


def signature(secret: str, approval_id: str, bound: str, expires_at: float | None) -> str:
    """HMAC-SHA256 of a grant: its id, binding and expiry."""
    message = canonical_json([approval_id, bound, expires_at])
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_by(secret: str, grant: Approval) -> bool:
    """Whether ``grant`` was signed with ``secret`` for exactly its binding and expiry."""
    expected = signature(secret, grant.approval_id, grant.binding, grant.expires_at)
    return grant.signature is not None and hmac.compare_digest(expected, grant.signature)
