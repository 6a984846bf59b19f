"""SQLite planner statistics: made on open, while the tables grow, and on close.

With statistics ``list(status=, limit=)`` walks the submit_time index and
stops early instead of sorting every match; the reference never makes any.
Everything here is best effort: it never waits for another writer's lock and
never fails a call, and it touches neither the schema nor ``user_version``.
"""

from __future__ import annotations

import contextlib
import sqlite3

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

#: Rows a SQLite store writes before it first refreshes planner statistics; each
#: refresh doubles the next threshold, so the cost per write stays constant.
FIRST_STATISTICS_AT = 1000


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn``, or None on other drivers."""
    raw = conn.connection.dbapi_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


def refresh(conn: Connection, busy_timeout_ms: int, *, optimize: bool) -> None:
    """A table never analysed while holding rows gets a bounded ``ANALYZE``;
    after that, with ``optimize``, ``PRAGMA optimize`` refreshes what SQLite
    judges stale. Skipped when another connection holds the write lock."""
    raw = sqlite_driver(conn)
    if raw is None or raw.in_transaction:
        return
    run = conn.exec_driver_sql  # through SQLAlchemy, so echo and listeners see it
    try:
        with contextlib.suppress(SQLAlchemyError):  # statistics never fail or block a call
            run("PRAGMA busy_timeout = 0")
            run("PRAGMA analysis_limit = 1000")
            if _never_analysed(conn, "tasks"):
                run("ANALYZE")
            elif optimize:
                run("PRAGMA optimize")
        run(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    finally:
        conn.rollback()  # ends SQLAlchemy's autobegun (empty) transaction


def _never_analysed(conn: Connection, table: str) -> bool:
    """Whether ``table`` holds rows but has no statistics yet."""
    run = conn.exec_driver_sql
    if run(f"SELECT 1 FROM {table} LIMIT 1").first() is None:
        return False
    if run("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
        return True
    return run("SELECT 1 FROM sqlite_stat1 WHERE tbl = ?", (table,)).first() is None


class GrowthWatch:
    """Refreshes statistics at 1,000 written rows and at each doubling after that.

    SQLite counts the rows a connection wrote (``total_changes``), so a
    long-lived store's listings get the good plan too, not only after reopening.
    """

    def __init__(self) -> None:
        self._next = FIRST_STATISTICS_AT

    def after_write(self, conn: Connection, raw: object, busy_timeout_ms: int) -> None:
        """After a committed write on ``conn``, whose driver connection is ``raw``."""
        if isinstance(raw, sqlite3.Connection) and raw.total_changes >= self._next:
            self._next = 2 * raw.total_changes
            refresh(conn, busy_timeout_ms, optimize=True)
