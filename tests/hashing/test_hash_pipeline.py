"""Large inputs are hashed on a second core as the walk goes (`rust/pipeline.rs`).

The digest must be exactly SHA-256 of `canonical_json`, wherever the output is cut into
chunks, and a refusal after hashing has started must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import dar
from dar import CanonicalizationError, canonical_json, input_hash, input_hashes

START = 64 * 1024


def expected(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


@pytest.mark.parametrize("extra", [-70, -1, 0, 1, 63, 64, 65, 4097, 32 * 1024 + 3])
def test_sizes_around_every_threshold(extra: int) -> None:
    # A list of 100-byte strings, then one string that puts the total where we want it.
    item = "x" * 96  # written as "xx…x", plus its comma: 99 bytes
    n = START // 99
    value: list[Any] = [item] * n + ["y" * max(1, START + extra - 99 * n)]
    assert input_hash(value) == expected(value)
    for size in (3, 10):
        big = [value] * size  # several chunks, fed between the inner lists
        assert input_hash(big) == expected(big)


def test_nested_dicts_without_lists() -> None:
    value = {f"k{i:05d}": {"name": "n" * 50, "v": i * 0.5, "tags": None} for i in range(20_000)}
    assert len(canonical_json(value)) > 10 * START
    assert input_hash(value) == expected(value)


def test_a_refusal_after_hashing_started_names_its_path_and_the_next_call_works() -> None:
    value: list[Any] = [{"row": i, "text": "t" * 80} for i in range(20_000)]
    value.append({"row": -1, "price": float("nan")})
    with pytest.raises(CanonicalizationError) as info:
        input_hash(value)
    assert info.value.path == "$[20000].price"
    value.pop()
    assert input_hash(value) == expected(value)


def test_batches_of_large_inputs() -> None:
    values = [[{"i": i, "pad": "p" * 200}] * (400 + 300 * i) for i in range(6)]
    assert input_hashes(values) == [expected(v) for v in values]
    assert dar.input_hash(values) == expected(values)


def test_default_conversions_inside_a_large_input() -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    value = [{"amount": Money(i), "memo": "m" * 60} for i in range(5_000)]

    def plain(o: object) -> object:
        assert isinstance(o, Money)
        return {"cents": o.cents}

    converted = [{"amount": {"cents": i}, "memo": "m" * 60} for i in range(5_000)]
    assert input_hash(value, default=plain) == expected(converted)


def test_hashing_moves_to_a_worker_thread() -> None:
    """The pipeline really runs: its worker threads exist once a large input was hashed."""
    value = [{"i": i, "pad": "p" * 100} for i in range(2_000)]
    assert input_hash(value) == expected(value)
    names = {p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")}
    assert any(name.startswith("dar-hash-") for name in names), names


# Each scenario hung before the pipeline was kept to walks that run no Python code: a
# `default=` let other threads' walks take every worker, hashed again inside the walk, or
# forked mid-walk. Run in a child with one worker thread, under a timeout.
SCENARIOS = {
    "threads with default=": """
import datetime, threading, dar
when = datetime.datetime(2024, 1, 1)
data = [{"when": when, "text": "z" * 200, "n": i} for i in range(5000)]
def iso(o): return o.isoformat()
expected = dar.input_hash(data, default=iso)
results = []
def run():
    results.extend(dar.input_hash(data, default=iso) == expected for _ in range(3))
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert results == [True] * 12
""",
    "hashing again inside default=": """
import dar
big = ["x" * 100] * 5000
class Again: pass
inner = dar.input_hash(big)
got = dar.input_hash(big + [Again()], default=lambda o: dar.input_hash(big))
assert got == dar.input_hash(big + [inner])
batch = dar.input_hash(big + [Again()], default=lambda o: dar.input_hashes_from_texts(["{}"])[0])
assert batch == dar.input_hash(big + [dar.input_hash({})])
""",
    "fork inside default=": """
import os, dar
big = ["x" * 100] * 5000
class Fork: pass
child = None
def default(o):
    global child
    child = os.fork()
    return "f"
got = dar.input_hash(big + [Fork()] + big, default=default)
if child == 0:
    os._exit(0 if got == dar.input_hash(big + ["f"] + big) else 3)
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0
""",
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_hang(name: str) -> None:
    env = os.environ | {"RAYON_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCENARIOS[name]], env=env, timeout=120, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
