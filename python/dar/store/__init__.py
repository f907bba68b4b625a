"""Stores: where claims and events live. SQLite for development, Postgres for production.

`open_store(url)` picks one from a URL; both implement `AdminStore`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dar.errors import ConfigurationError
from dar.store.base import AdminStore, Store
from dar.store.sqlite import SQLiteStore

__all__ = ["AdminStore", "SQLiteStore", "Store", "open_store", "split_schema"]


def open_store(url: str, **kwargs: Any) -> AdminStore:
    """``sqlite:///agent.db``, ``sqlite://:memory:`` or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteStore.from_url(url, **kwargs)
    if scheme in ("postgres", "postgresql"):
        from dar.store.postgres import PostgresStore

        url, schema = split_schema(url)
        return PostgresStore(url, schema=schema or "public", **kwargs)
    raise ConfigurationError(
        f"unknown database URL {url!r}: use sqlite:///file.db, sqlite://:memory: "
        "or postgresql://..."
    )


def split_schema(url: str) -> tuple[str, str | None]:
    """Take dar's own ``schema=`` option out of a Postgres URL (libpq would refuse it)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema
