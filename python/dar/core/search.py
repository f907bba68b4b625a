"""Monte Carlo Tree Search over tool calls, as a decision free of I/O.

`search` yields three kinds of requests and the runtime answers them: `Propose` (the
user's ``propose``: the candidates from a branch), `Try` (one call in the sandbox: a read
run once, an effect planned, a refusal) and `Judge` (the user's ``score``). Each
iteration selects a path down the tree by UCT, expands one untried candidate (one unit of
``budget``), rolls out from it by following ``propose``'s first candidate to ``depth``
calls, scores the end and adds the score to every node on the way back. The same answers
and ``seed`` give the same tree, so a search is reproducible and testable without a store.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from dar.records import Result
from dar.speculate import Branch, Candidate, Node, Step

#: The exploration constant of UCT (sqrt 2: scores are in 0..1).
EXPLORE = math.sqrt(2.0)


@dataclass(frozen=True, slots=True)
class Propose:
    branch: Branch


@dataclass(frozen=True, slots=True)
class Try:
    branch: Branch
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class Judge:
    branch: Branch


Request = Propose | Try | Judge
Searching = Generator[Request, Any, "Outcome"]


@dataclass(eq=False)
class _Node:
    parent: _Node | None
    step: Step | None
    depth: int
    untried: list[Candidate] | None = None  # None: not proposed from yet
    children: list[_Node] = field(default_factory=list)
    visits: int = 0
    total: float = 0.0
    best: float = 0.0  # the best score of a path through it

    @property
    def mean(self) -> float:
        return self.total / self.visits if self.visits else 0.0

    def branch(self, session: str | None) -> Branch:
        steps: list[Step] = []
        node: _Node | None = self
        while node is not None and node.step is not None:
            steps.append(node.step)
            node = node.parent
        return Branch(session, tuple(reversed(steps)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The tree (root first), the chosen path (its steps, rollout included) and why."""

    tree: tuple[Node, ...]
    path: tuple[Step, ...]
    why: str
    score: float
    expansions: int


def search(
    session: str | None,
    *,
    budget: int,
    depth: int,
    seed: int,
    deadline: float | None,
    clock: Callable[[], float],
    named: Callable[[Candidate], str] | None = None,
) -> Searching:
    """Search until ``budget`` nodes are expanded, the clock passes ``deadline`` (in the
    clock's seconds) or the tree has nothing left to try; then choose the path.
    ``named(candidate)`` is how ``why`` names a call (by default its tool and arguments)."""
    if budget < 1 or depth < 1:
        raise ValueError(f"budget and depth must be >= 1, not budget={budget} depth={depth}")
    rng = random.Random(seed)
    root = _Node(None, None, 0)
    expansions = 0
    while expansions < budget and (deadline is None or clock() < deadline):
        node = yield from _select(root, session, depth)
        if node is None:
            break  # every path is in the tree already
        if node.untried:
            candidate = node.untried.pop(rng.randrange(len(node.untried)))
            result = yield Try(node.branch(session), candidate)
            child = _Node(node, Step(candidate, result), node.depth + 1)
            node.children.append(child)
            node, expansions = child, expansions + 1
        value = yield from _rollout(node.branch(session), depth)
        while node is not None:
            node.visits, node.total = node.visits + 1, node.total + value
            node.best = max(node.best, value)
            node = node.parent
    return (yield from _choose(root, session, depth, expansions, named or short))


def _select(root: _Node, session: str | None, depth: int) -> Generator[Request, Any, _Node | None]:
    """Down the tree by UCT, past every subtree with nothing left to try, to a node with a
    candidate left to try; None when the whole tree is tried."""
    node = root
    while True:
        if node.untried is None and node.depth < depth:
            node.untried = _distinct((yield Propose(node.branch(session))))
        if node.untried:
            return node
        open_ = [c for c in node.children if not _done(c, depth)]
        if not open_:
            if node is root:
                return None
            node = root  # that branch just turned out to end here: choose again
            continue
        parent = node
        node = max(open_, key=lambda c: _uct(c, parent.visits))


def _done(node: _Node, depth: int) -> bool:
    """Nothing left to try below ``node``: it ends a path, or all its calls were tried."""
    if node.depth >= depth:
        return True
    if node.untried is None or node.untried:
        return False
    return all(_done(c, depth) for c in node.children)


def _uct(child: _Node, parent_visits: int) -> float:
    if child.visits == 0:
        return math.inf
    return child.mean + EXPLORE * math.sqrt(math.log(parent_visits) / child.visits)


def _rollout(branch: Branch, depth: int) -> Generator[Request, Any, float]:
    """Follow ``propose``'s first candidate to ``depth`` calls, then score the end."""
    branch = yield from _follow(branch, depth)
    value = yield Judge(branch)
    return _checked(value)


def _follow(branch: Branch, depth: int) -> Generator[Request, Any, Branch]:
    """The rollout policy: ``propose``'s first candidate at each step, to ``depth`` calls."""
    while len(branch.path) < depth:
        proposed = _distinct((yield Propose(branch)))
        if not proposed:
            break
        result = yield Try(branch, proposed[0])
        branch = branch.then(Step(proposed[0], result))
    return branch


def _checked(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"score() must return a number from 0 to 1, not {type(value).__name__}")
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"score() must return a number from 0 to 1, not {value!r}")
    return float(value)


def _distinct(proposed: Any) -> list[Candidate]:
    """The candidates in order, each call once (by tool and canonical arguments)."""
    if not isinstance(proposed, (list, tuple)):
        raise TypeError(f"propose() must return a list of Candidate, not {type(proposed).__name__}")
    seen: dict[str, Candidate] = {}
    for i, c in enumerate(proposed):
        if not isinstance(c, Candidate):
            raise TypeError(f"propose()[{i}] must be a Candidate, not {type(c).__name__}")
        seen.setdefault(c.identity, c)
    return list(seen.values())


def _choose(
    root: _Node, session: str | None, depth: int, expansions: int, named: Callable[[Candidate], str]
) -> Generator[Request, Any, Outcome]:
    """At each level the child with the best path through it (then the most visited, then
    the best mean: the world in a search answers each call one way, so the best path seen
    is a path that can be had), then the rollout policy from the last node in the tree,
    as that path was scored."""
    chosen: list[_Node] = []
    reasons: list[str] = []
    node = root
    while node.children:
        ranked = sorted(node.children, key=lambda c: (c.best, c.visits, c.mean), reverse=True)
        best = ranked[0]
        reasons.append(_reason(best, ranked[1:], named))
        chosen.append(best)
        node = best
    branch = yield from _follow(node.branch(session), depth)
    tree = _flatten(root, set(map(id, chosen)))
    score = node.best if chosen else 0.0
    return Outcome(tree, branch.path, "; ".join(reasons), score, expansions)


def _reason(best: _Node, others: list[_Node], named: Callable[[Candidate], str]) -> str:
    assert best.step is not None
    said = f"{named(best.step.candidate)} ({_figures(best)})"
    if not others:
        return f"{said}: the only call tried"
    runner = others[0]
    assert runner.step is not None
    return f"{said} over {named(runner.step.candidate)} ({_figures(runner)})"


def _figures(node: _Node) -> str:
    return f"best {node.best:.3f}, visits {node.visits}, mean {node.mean:.3f}"


def short(candidate: Candidate) -> str:
    """The call, short: its tool and the start of its arguments."""
    tool, arguments = candidate.identity.split(" ", 1)
    return f"{tool} {arguments if len(arguments) <= 60 else arguments[:59] + '…'}"


def _flatten(root: _Node, chosen: set[int]) -> tuple[Node, ...]:
    """The tree, each node before its children (in the order they were expanded)."""
    nodes: list[Node] = []
    todo: list[tuple[_Node, int | None]] = [(root, None)]
    while todo:
        node, parent = todo.pop()
        index = len(nodes)
        step = node.step
        nodes.append(
            Node(
                index,
                parent,
                node.depth,
                None if step is None else step.candidate,
                "root" if step is None else step.result.status.value,
                None if step is None else shown(step.result),
                node.visits,
                node.mean,
                node.best,
                step is None or id(node) in chosen,
            )
        )
        todo.extend((c, index) for c in reversed(node.children))
    return tuple(nodes)


def shown(result: Result) -> Any:
    """What a node shows of its call: the output (a read's, or an effect's preview) as the
    log records it, or why it was refused or failed."""
    if result.output_json is not None:  # as the log has it: personal fields redacted
        return json.loads(result.output_json)
    if result.output is not None:
        return result.output
    return result.reason or result.error
