"""Speculative branching: the words of `rt.speculate`, a search over the model's candidate
tool calls before anything irreversible happens.

``propose(branch)`` says which calls are worth trying next from a branch, ``score(branch)``
how good the branch's end looks (0..1). Inside a search, reads run for real (once per
distinct input) and every other effect is only planned, so a branch's ``path`` holds what
the world said and what each effect would do, and nothing but `rt.commit_all(search.best)`
ever runs an effect.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dar.records import Result

if TYPE_CHECKING:
    from dar.core.dryrun import Plan


@dataclass(frozen=True, slots=True)
class Candidate:
    """One tool call worth trying: the tool's name and its arguments (a dict, or JSON text
    as a model sends it)."""

    tool: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """What makes two candidates the same call: the tool and its arguments' JSON with
        sorted keys (text that is not JSON stays as sent, and is refused when tried)."""
        args: Any = self.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                return f"{self.tool} {args}"
        try:
            return f"{self.tool} {json.dumps(args, sort_keys=True, separators=(',', ':'))}"
        except (TypeError, ValueError):  # no JSON form: refused, naming why, when tried
            return f"{self.tool} {args!r}"


@dataclass(frozen=True, slots=True)
class Step:
    """One call on a branch and what it gave: a read's output, an effect's ``planned``
    result (``result.extra["plan"]`` is the `Plan`, ``result.output`` its preview), or a
    refusal (``rejected``, with the rule's reason)."""

    candidate: Candidate
    result: Result


@dataclass(frozen=True, slots=True)
class Branch:
    """A path from the start of a search: the steps so far, in the session ``session``."""

    session: str | None
    path: tuple[Step, ...] = ()

    def then(self, step: Step) -> Branch:
        return Branch(self.session, (*self.path, step))


#: ``propose(branch)``: the candidates worth trying next, best guess first (a rollout
#: follows the first); none ends the branch. May be a coroutine function on `AsyncRuntime`.
Propose = Callable[[Branch], "list[Candidate] | Awaitable[list[Candidate]]"]
#: ``score(branch)``: how good the branch's end looks, from 0 (worst) to 1 (best).
Score = Callable[[Branch], "float | Awaitable[float]"]


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the search tree: the call tried (None at the root), what it gave, how
    often the search went through it, the mean score of those visits and the best."""

    index: int
    parent: int | None
    depth: int
    candidate: Candidate | None
    status: str  # the call's status: executed (a read), planned, rejected, failed...
    shown: Any  # the read's output, the effect's preview, or the refusal's reason
    visits: int
    mean: float
    best: float  # the best score of a path through it
    chosen: bool  # on the path the search chose

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        call = None if c is None else {"tool": c.tool, "arguments": c.arguments}
        return {
            "index": self.index,
            "parent": self.parent,
            "depth": self.depth,
            "call": call,
            "status": self.status,
            "shown": self.shown,
            "visits": self.visits,
            "mean": round(self.mean, 6),
            "best": round(self.best, 6),
            "chosen": self.chosen,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Node:
        call = value["call"]
        candidate = None if call is None else Candidate(call["tool"], call["arguments"])
        return cls(
            value["index"],
            value["parent"],
            value["depth"],
            candidate,
            value["status"],
            value["shown"],
            value["visits"],
            value["mean"],
            value["best"],
            value["chosen"],
        )


@dataclass(frozen=True, slots=True)
class Search:
    """What `rt.speculate` found: ``best``, the chosen path's effects as plans (commit
    them with `rt.commit_all(search.best)`); ``path``, every step of that path (reads too);
    ``tree``, every node the search expanded; ``why``, how the chosen path beat the others."""

    search_id: str
    session: str | None
    best: list[Plan]
    path: tuple[Step, ...]
    tree: tuple[Node, ...]
    why: str
    score: float  # the chosen path's score
    expansions: int

    def as_dict(self) -> dict[str, Any]:
        """The search as JSON values (a durable run journals it in this form)."""
        return {
            "search_id": self.search_id,
            "session": self.session,
            "best": [json.loads(p.to_json()) for p in self.best],
            "tree": [n.as_dict() for n in self.tree],
            "why": self.why,
            "score": self.score,
            "expansions": self.expansions,
        }
