"""How often one warm call crosses between two groups of the runtime's files.

A profile hook counts every call into, and every return out of, a function of the other
group while one fresh call of a warm in-memory `Runtime` runs (after 50 calls that warm its
caches). It measured the layout change: the facade against the shared base.

    PYTHONPATH=python python benches/crossings.py runtime/sync.py runtime/base.py [rule]
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType
from typing import Any

import dar


def crossings(a: list[str], b: list[str], with_rule: bool) -> int:
    warnings.simplefilter("ignore")  # the in-memory runtime's warning
    ship = dar.tool(effect=dar.Effect.MUTATE_LOCAL, name="ship")(lambda order: {"to": order})
    rules = [dar.rule(applies_to="ship")(lambda input, ctx: True)] if with_rule else []
    rt = dar.Runtime(tools=[ship], rules=rules)
    package = os.path.dirname(dar.__file__) + "/"

    def group(path: str) -> str | None:
        name = path[len(package) :] if path.startswith(package) else None
        return "a" if name in a else "b" if name in b else None

    for i in range(50):
        rt.execute(ship, {"order": f"warm-{i}"})
    count = 0

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "return") and frame.f_back is not None:
            mine, other = group(frame.f_code.co_filename), group(frame.f_back.f_code.co_filename)
            if mine and other and mine != other:
                count += 1

    sys.setprofile(hook)
    rt.execute(ship, {"order": "fresh"})
    sys.setprofile(None)
    return count


if __name__ == "__main__":
    first, second = sys.argv[1].split(","), sys.argv[2].split(",")
    print(crossings(first, second, len(sys.argv) > 3 and sys.argv[3] == "rule"))
