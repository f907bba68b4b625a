"""Text to vectors for ``Similar``: the default offline embedder and the contract of a user's.

The default is WordLlama's ``l2_supercat`` model at 256 dimensions: a static embedding (a
table of token vectors, averaged) whose weights and tokenizer ship inside the ``wordllama``
wheel, so it loads with no network and no download at run time, in about 0.3 s. It is behind
the ``[semantic]`` extra. Any callable ``Sequence[str] -> Sequence[Sequence[float]]`` (a
provider's embeddings API, say) can replace it; `embed` checks what such a callable returns,
because a vector of the wrong length or with a NaN would silently compare as "unlike
anything" and let duplicates through.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from dar.errors import ConfigurationError

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Texts in, one vector per text out, in order."""

_lock = threading.Lock()
_default: Embedder | None = None


def default_embedder() -> Embedder:
    """The offline embedder, loaded once per process. Raises `ConfigurationError` naming the
    ``[semantic]`` extra when ``wordllama`` is not installed: call it when a tool is
    registered, so a missing extra is found before the first call."""
    global _default
    with _lock:
        if _default is None:
            _default = _load_wordllama()
        return _default


def _load_wordllama() -> Embedder:
    # wordllama's own loader looks for the tokenizer under a folder the wheel does not have
    # ("tokenizer/", the wheel ships "tokenizers/") and then downloads it; reading both
    # files from the installed package directly never reaches the network.
    wordllama = _require("wordllama")
    tokenizers = _require("tokenizers")
    safetensors = _require("safetensors")
    inference = importlib.import_module("wordllama.inference")
    root = Path(wordllama.__file__).parent
    tokenizer = tokenizers.Tokenizer.from_file(
        str(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
    )
    weights = root / "weights" / "l2_supercat_256.safetensors"
    with safetensors.safe_open(str(weights), framework="np") as tensors:
        table = tensors.get_tensor("embedding.weight")
    model = inference.WordLlamaInference(table, tokenizer, binary=False)

    def embed_texts(texts: Sequence[str]) -> list[list[float]]:
        vectors: Any = model.embed(list(texts), norm=True)
        return [list(map(float, row)) for row in vectors]

    return embed_texts


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"Similar's default embedder needs {exc.name or module}: install "
            "durable-agent-runtime with its [semantic] extra (pip install "
            "'durable-agent-runtime[semantic]'), or pass embedder=<your callable>"
        ) from exc


def embed(embedder: Embedder, texts: Sequence[str]) -> list[tuple[float, ...]]:
    """``embedder``'s vectors for ``texts``, checked: one per text, all of one length,
    every number finite, none all zeros. A `ConfigurationError` names the first fault by
    its JSON path in the answer (``$[2]``, ``$[0][17]``)."""
    answer = _listed(embedder(texts))
    if answer is None:
        raise ConfigurationError("the embedder returned no list of vectors")
    if len(answer) != len(texts):
        raise ConfigurationError(
            f"the embedder returned {len(answer)} vectors for {len(texts)} texts"
        )
    vectors = [_vector(row, f"$[{i}]") for i, row in enumerate(answer)]
    for i, vector in enumerate(vectors[1:], start=1):
        if len(vector) != len(vectors[0]):
            raise ConfigurationError(
                f"$[{i}]: the embedder returned a vector of {len(vector)} numbers after one "
                f"of {len(vectors[0])}; all must have one length"
            )
    return vectors


def _listed(value: object) -> list[object] | None:
    """``value`` as a list when it is a sequence of items (a list, a tuple, a NumPy array);
    None for anything else, a string included."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return None
    return list(value)


def _vector(row: object, path: str) -> tuple[float, ...]:
    items = _listed(row)
    if not items:
        raise ConfigurationError(f"{path}: the embedder returned {row!r:.60}, not a vector")
    numbers: list[float] = []
    for j, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(x):
            raise ConfigurationError(f"{path}[{j}]: {x!r} is not a finite number")
        numbers.append(float(x))
    if not any(numbers):
        raise ConfigurationError(f"{path}: the vector is all zeros, so it is like nothing")
    return tuple(numbers)
