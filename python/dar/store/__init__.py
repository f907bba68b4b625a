"""Stores: where claims and events live. SQLite for development, Postgres for production.

`open_store(url)` picks one from a URL; both implement `AdminStore`. The versioned SQL
migrations ship in `migrations/` beside `migrate`, which finds them.

May import: `dar.audit`, `dar.core` and the vocabulary at the top of `dar`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dar.errors import ConfigurationError
from dar.store.base import AdminStore, Store, seconds_option
from dar.store.sqlite import SQLiteStore

__all__ = [
    "AdminStore",
    "SQLiteStore",
    "Store",
    "open_store",
    "split_schema",
    "store_of",
    "take_options",
]


def store_of(store: str | Store | None) -> Store:
    """What a runtime was given: a URL to open, a store to use, or nothing (in memory)."""
    if store is None:
        return open_store("sqlite://:memory:")
    if isinstance(store, str):
        return open_store(store)
    return store


def open_store(url: str, **kwargs: Any) -> AdminStore:
    """``sqlite:///agent.db``, ``sqlite://:memory:`` or ``postgresql://...``."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteStore.from_url(url, **kwargs)
    if scheme in ("postgres", "postgresql"):
        try:
            from dar.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                f"{url.split('@')[-1]!r} needs psycopg: pip install 'psycopg[binary]' "
                "psycopg-pool (or install durable-agent-runtime with its [postgres] extra)"
            ) from exc
        url, options = take_options(url, ("schema", "retry_for", "pool_mode"))
        if "retry_for" in options:
            kwargs.setdefault("retry_for", seconds_option(options, "retry_for"))
        if "pool_mode" in options:
            kwargs.setdefault("pool_mode", options["pool_mode"])
        return PostgresStore(url, schema=options.get("schema") or "public", **kwargs)
    raise ConfigurationError(
        f"unknown database URL {url!r}: use sqlite:///file.db, sqlite://:memory: "
        "or postgresql://..."
    )


def take_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Take dar's own query options out of a Postgres URL (libpq would refuse them). The
    rest of the URL is passed through exactly as written: libpq, not dar, decodes it (a
    unix-socket URL with an empty host, ``options=-c%20...``)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept, taken = [], {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) in names:
            taken[unquote(name)] = unquote(value)
        elif part:
            kept.append(part)
    return base + ("?" + "&".join(kept) if kept else ""), taken


def split_schema(url: str) -> tuple[str, str | None]:
    """A Postgres URL without dar's ``schema=`` option, and that option."""
    rest, options = take_options(url, ("schema",))
    return rest, options.get("schema")
