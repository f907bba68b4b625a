"""Open a store from a URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dar.errors import ConfigurationError
from dar.store.base import AdminStore, AsyncStore, Store


def open_store(url: str, **kwargs: Any) -> AdminStore:
    """``sqlite:///agent.db``, ``sqlite://:memory:`` or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from dar.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **kwargs)
    if scheme in ("postgres", "postgresql"):
        from dar.store.postgres import PostgresStore

        url, schema = split_schema(url)
        return PostgresStore(url, schema=schema or "public", **kwargs)
    raise ConfigurationError(
        f"unknown database URL {url!r}: use sqlite:///file.db, sqlite://:memory: "
        "or postgresql://..."
    )


def open_async_store(url: str, **kwargs: Any) -> Store | AsyncStore:
    """As ``open_store``, with an asyncio pool for Postgres (SQLite stays sync, threaded)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql"):
        from dar.store.postgres import AsyncPostgresStore

        url, schema = split_schema(url)
        return AsyncPostgresStore(url, schema=schema or "public", **kwargs)
    return open_store(url, **kwargs)


def split_schema(url: str) -> tuple[str, str | None]:
    """Take dar's own ``schema=`` option out of a Postgres URL (libpq would refuse it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema
