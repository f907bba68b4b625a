"""Guards: limits a call is held to that depend on the tool's earlier calls, not its input alone.

A rule judges one call. ``Budget`` and ``Similar`` judge a call against the history of its
tool — the sum of refunds to one customer in a day, the message already sent to one
number ten minutes ago — so the runtime reads that history and writes this call's share in
one serialized step before the claim (`dar.core.guards` decides; the stores serialize).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

from dar.errors import ConfigurationError

Then = Literal["hold", "reject", "flag"]
GuardScope = Literal["session", "global"]

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The per-field name that scopes a budget to the call's session (correlation id).
SESSION = "session"


def window_seconds(within: str | float, where: str) -> float:
    """``within`` as seconds: a positive number, or text like ``"90s"``, ``"10m"``, ``"24h"``,
    ``"7d"``."""
    if isinstance(within, (int, float)) and not isinstance(within, bool):
        seconds = float(within)
    elif isinstance(within, str) and (found := _WINDOW.match(within)):
        seconds = float(found.group(1)) * _UNIT[found.group(2)]
    else:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(
            f"{where}: within={within!r} must be a positive duration like '10m', '24h' or "
            "a number of seconds"
        )
    return seconds


def window_text(within: str | float) -> str:
    """How a window reads in a reason: as it was given (``24h``), or in seconds."""
    return within.strip() if isinstance(within, str) else f"{within:g}s"


def _fields(names: tuple[str, ...] | list[str] | str, what: str) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{what} takes field names, not {name!r}")
    return names


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``limit`` of field ``of`` (of calls, when ``of`` is None) per value of the
    ``per`` fields (``"session"``: per correlation id) in any window of ``within``, counting
    the calls still running or awaiting approval. A call that would go over is refused."""

    limit: float
    of: str | None = None
    per: tuple[str, ...] = ()
    within: str | float = "24h"
    seconds: float = dc_field(default=0.0, repr=False, compare=False)

    def __init__(
        self,
        limit: float,
        *,
        of: str | None = None,
        per: tuple[str, ...] | list[str] | str = (),
        within: str | float,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
            raise ConfigurationError(f"Budget: limit must be a number >= 0, not {limit!r}")
        if of is not None and (not isinstance(of, str) or not of):
            raise ConfigurationError(f"Budget: of= takes a field name, not {of!r}")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "of", of)
        object.__setattr__(self, "per", _fields(per, "Budget: per="))
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "seconds", window_seconds(within, "Budget"))

    @property
    def name(self) -> str:
        """How refusals name the guard: ``Budget(500 of amount per customer_id in 24h)``."""
        what = f"{self.limit:g}" + (f" of {self.of}" if self.of else " calls")
        per = f" per {', '.join(self.per)}" if self.per else ""
        return f"Budget({what}{per} in {window_text(self.within)})"

    @property
    def fields(self) -> tuple[str, ...]:
        """The input fields the guard reads."""
        return tuple(f for f in (*self.per, self.of) if f is not None and f != SESSION)


@dataclass(frozen=True, slots=True)
class Similar:
    """Hold (or refuse, or flag) a call whose ``field`` says again what an earlier call of
    the tool said, with equal ``same`` fields, in the same session (``scope="global"``:
    any), within ``within`` — judged by `dar.core.nearness`."""

    field: str
    same: tuple[str, ...] = ()
    within: str | float = "10m"
    threshold: float | None = None
    then: Then = "hold"
    scope: GuardScope = "session"
    seconds: float = dc_field(default=0.0, repr=False, compare=False)

    def __init__(
        self,
        field: str,
        *,
        same: tuple[str, ...] | list[str] | str = (),
        within: str | float,
        threshold: float | None = None,
        then: Then = "hold",
        scope: GuardScope = "session",
    ) -> None:
        if not isinstance(field, str) or not field:
            raise ConfigurationError(f"Similar: field must be a field name, not {field!r}")
        if then not in ("hold", "reject", "flag"):
            raise ConfigurationError(
                f"Similar: then must be 'hold', 'reject' or 'flag', not {then!r}"
            )
        if scope not in ("session", "global"):
            raise ConfigurationError(f"Similar: scope must be 'session' or 'global', not {scope!r}")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not -1 <= threshold <= 1
        ):
            raise ConfigurationError(
                f"Similar: threshold must be a cosine in [-1, 1], not {threshold!r}"
            )
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "same", _fields(same, "Similar: same="))
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "then", then)
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "seconds", window_seconds(within, "Similar"))

    @property
    def name(self) -> str:
        """How holds and refusals name the guard: ``Similar(message same to in 10m)``."""
        same = f" same {', '.join(self.same)}" if self.same else ""
        return f"Similar({self.field}{same} in {window_text(self.within)}, {self.scope})"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field, *self.same)


Guard = Budget | Similar
