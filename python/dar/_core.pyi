"""Type stubs for the compiled RFC 8785 core (`rust/binding.rs`)."""

from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "BUILD",
    "MAX_DEPTH",
    "__version__",
    "canonical_json",
    "canonical_json_from_text",
    "input_hash",
    "input_hash_from_text",
    "input_hashes",
    "input_hashes_from_texts",
    "sha256_hex_of",
]

BUILD: str
"""`abi3` (the stable-ABI fallback) or the CPython it was built for, e.g. `cpython-3.11`."""
MAX_DEPTH: int
__version__: str

def canonical_json(obj: object, *, default: Callable[[Any], object] | None = None) -> bytes: ...
def input_hash(obj: object, *, default: Callable[[Any], object] | None = None) -> str: ...
def input_hashes(
    objs: Iterable[object], *, default: Callable[[Any], object] | None = None
) -> list[str]: ...
def canonical_json_from_text(text: str | bytes) -> bytes: ...
def input_hash_from_text(text: str | bytes) -> str: ...
def input_hashes_from_texts(
    texts: Iterable[str | bytes], threads: int | None = None
) -> list[str]: ...
def sha256_hex_of(data: bytes) -> str: ...
