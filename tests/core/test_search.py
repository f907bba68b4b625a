"""The search as pure code: driven here by hand, with a world of numbers for answers."""

from __future__ import annotations

from typing import Any

import pytest

from dar.core.search import Judge, Outcome, Propose, Try, search
from dar.effects import Status
from dar.records import Result
from dar.speculate import Branch, Candidate


def _drive(
    values: dict[str, float], *, budget: int, depth: int = 2, seed: int = 0, **kw: Any
) -> tuple[Outcome, dict[str, int]]:
    """Each call is a letter; a path scores the value of its last letter. Counts what was
    asked."""
    asked = {"propose": 0, "try": 0, "judge": 0}
    gen = search(None, budget=budget, depth=depth, seed=seed, deadline=kw.get("deadline"),
                 clock=kw.get("clock", lambda: 0.0))  # fmt: skip
    answer: Any = None
    try:
        while True:
            op = gen.send(answer)
            if isinstance(op, Propose):
                asked["propose"] += 1
                answer = [Candidate(k) for k in values]
            elif isinstance(op, Try):
                asked["try"] += 1
                answer = Result(Status.PLANNED, output=op.candidate.tool)
            else:
                assert isinstance(op, Judge)
                asked["judge"] += 1
                answer = _value(values, op.branch)
    except StopIteration as stop:
        return stop.value, asked


def _value(values: dict[str, float], branch: Branch) -> float:
    return values[branch.path[-1].candidate.tool] if branch.path else 0.0


def test_budget_counts_the_nodes_added_to_the_tree() -> None:
    out, _ = _drive({"a": 0.1, "b": 0.9, "c": 0.5}, budget=5)
    assert out.expansions == 5 and len(out.tree) == 6  # the root and five calls


def test_the_search_ends_when_every_path_is_in_the_tree() -> None:
    out, _ = _drive({"a": 0.1, "b": 0.9}, budget=100, depth=2)
    assert out.expansions == 6  # two calls, then two under each of them


def test_the_chosen_path_is_the_best_one_seen() -> None:
    out, _ = _drive({"a": 0.1, "b": 0.9, "c": 0.5}, budget=40, depth=2)
    assert [s.candidate.tool for s in out.path] == ["b", "b"]
    chosen = [n for n in out.tree if n.chosen and n.candidate is not None]
    assert [n.candidate.tool for n in chosen if n.candidate] == ["b", "b"]
    assert out.why.startswith("b {} (best 0.900") and out.score == 0.9


def test_the_same_seed_gives_the_same_tree() -> None:
    values = {"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.2}
    one, _ = _drive(values, budget=7, seed=5)
    two, _ = _drive(values, budget=7, seed=5)
    assert one.tree == two.tree
    others = {repr(_drive(values, budget=7, seed=s)[0].tree) for s in range(5)}
    assert len(others) > 1


def test_a_deadline_stops_the_search() -> None:
    ticks = iter(range(1000))
    out, _ = _drive({"a": 0.5, "b": 0.4}, budget=50, deadline=3, clock=lambda: next(ticks))
    assert out.expansions == 3


def test_a_rollout_follows_the_first_candidate_to_depth() -> None:
    _, asked = _drive({"a": 0.5, "b": 0.4}, budget=1, depth=3)
    assert asked["judge"] == 1  # one rollout: expand one call, then two more by the first
    assert asked["try"] == 1 + 2 + 2  # and the chosen path's rollout to depth again


@pytest.mark.parametrize(
    ("proposed", "error"),
    [("a", "must return a list"), (["a"], r"propose\(\)\[0\] must be a Candidate")],
)
def test_a_bad_proposal_is_named(proposed: Any, error: str) -> None:
    gen = search(None, budget=1, depth=1, seed=0, deadline=None, clock=lambda: 0.0)
    assert isinstance(next(gen), Propose)
    with pytest.raises(TypeError, match=error):
        gen.send(proposed)


def test_a_score_out_of_range_is_named() -> None:
    gen = search(None, budget=1, depth=1, seed=0, deadline=None, clock=lambda: 0.0)
    next(gen)
    gen.send([Candidate("a")])
    assert isinstance(gen.send(Result(Status.PLANNED)), Judge)  # depth 1: judged at once
    with pytest.raises(ValueError, match="from 0 to 1"):
        gen.send(float("nan"))
