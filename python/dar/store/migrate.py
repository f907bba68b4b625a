"""Find the versioned SQL migrations that ship inside the package."""

from __future__ import annotations

from importlib import resources


def migration_files(dialect: str) -> list[tuple[str, str]]:
    """``(name, sql)`` for every migration of ``dialect`` (``sqlite``/``postgres``), in order."""
    folder = resources.files("dar.store") / "migrations" / dialect
    files = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    if not files:
        raise FileNotFoundError(f"no {dialect} migrations found in {folder}")
    return files
