"""Open a store from a URL."""

from __future__ import annotations

from typing import Any

from dar.errors import ConfigurationError
from dar.store.base import AsyncStore, Store


def open_store(url: str, **kwargs: Any) -> Store:
    """``sqlite:///agent.db``, ``sqlite://:memory:`` or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from dar.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **kwargs)
    if scheme in ("postgres", "postgresql"):
        from dar.store.postgres import PostgresStore

        return PostgresStore(url, **kwargs)
    raise ConfigurationError(
        f"unknown database URL {url!r}: use sqlite:///file.db, sqlite://:memory: "
        "or postgresql://..."
    )


def open_async_store(url: str, **kwargs: Any) -> Store | AsyncStore:
    """As ``open_store``, with an asyncio pool for Postgres (SQLite stays sync, threaded)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql"):
        from dar.store.postgres import AsyncPostgresStore

        return AsyncPostgresStore(url, **kwargs)
    return open_store(url, **kwargs)
