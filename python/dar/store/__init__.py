"""Stores: where claims and events live. SQLite for development, Postgres for production."""

from __future__ import annotations

from dar.store.base import Store
from dar.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store"]
