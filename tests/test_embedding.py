"""The embedder: the default loads from its wheel with no network, and what any embedder
returns is checked before a vector is stored or compared."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import dar.embedding
from dar.embedding import default_embedder, embed
from dar.errors import ConfigurationError

# Every connection and name look-up fails, and HOME is empty (no cached download): the
# default embedder must load and embed from the installed package alone.
OFFLINE = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network used")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from dar.embedding import default_embedder, embed
vectors = embed(default_embedder(), ["Your refund for ORD-1 was issued.", "Tu pedido llega hoy."])
print(len(vectors), len(vectors[0]))
"""


def test_the_default_embedder_loads_and_embeds_with_no_network(tmp_path: Path) -> None:
    python = Path(dar.embedding.__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE],
        env={"HOME": str(tmp_path), "PYTHONPATH": str(python), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "256"]


def test_the_default_vectors_are_unit_length_and_the_same_alone_or_in_a_batch() -> None:
    texts = ["Your refund for ORD-1 was issued.", "Su pedido ORD-2 llega mañana.", "ok"]
    batch = embed(default_embedder(), texts)
    assert [len(v) for v in batch] == [256, 256, 256]
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-3) for v in batch)
    alone = [embed(default_embedder(), [t])[0] for t in texts]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(alone, batch, strict=True))


def test_a_missing_extra_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dar.embedding, "_default", None)
    monkeypatch.setitem(sys.modules, "wordllama", None)  # an import of it now fails
    with pytest.raises(ConfigurationError, match=r"wordllama.*\[semantic\]"):
        default_embedder()


def returning(answer: object) -> dar.embedding.Embedder:
    def embedder(texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return answer  # type: ignore[return-value]  # deliberately wrong answers

    return embedder


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([[1.0, 0.0]], r"1 vectors for 2 texts"),
        ([[1.0, 0.0], [1.0, 0.0, 0.0]], r"\$\[1\]: .* 3 numbers after one of 2"),
        ([[1.0, float("nan")], [1.0, 0.0]], r"\$\[0\]\[1\]: nan is not a finite number"),
        ([[1.0, 0.0], [1.0, "x"]], r"\$\[1\]\[1\]: 'x' is not a finite number"),
        ([[1.0, 0.0], [0.0, 0.0]], r"\$\[1\]: the vector is all zeros"),
        ([[1.0, 0.0], []], r"\$\[1\]: .*not a vector"),
        ([[1.0, 0.0], "ab"], r"\$\[1\]: .*not a vector"),
        ("vectors", r"no list of vectors"),
        (None, r"no list of vectors"),
    ],
)
def test_a_users_embedder_that_answers_wrongly_is_named_by_path(
    answer: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        embed(returning(answer), ["one", "two"])


def test_a_users_embedder_may_answer_with_arrays_or_tuples() -> None:
    as_array = embed(returning(np.array([[1, 2], [3, 4]], dtype=np.float32)), ["a", "b"])
    as_tuples = embed(returning(((1, 2), (3.0, 4.0))), ["a", "b"])
    assert as_array == as_tuples == [(1.0, 2.0), (3.0, 4.0)]
