"""The application's own transaction, for tests of ``store.using()``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from uniqc_store import TaskStore


@contextmanager
def app_transaction(store: TaskStore) -> Iterator[Connection]:
    """The application's transaction: committed when the block ends, rolled back if it
    raises. On SQLite the store's own (BEGIN IMMEDIATE); on servers a connection of the
    application's from the store's engine."""
    if store.dialect == "sqlite":
        with store.transaction() as conn:
            yield conn
    else:
        with store.engine.begin() as conn:
            yield conn


class Undo(Exception):
    """Raised to make the application roll its transaction back."""
