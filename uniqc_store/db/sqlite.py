"""SQLite specifics: the transaction recipe (``BEGIN`` sent by us, ``BEGIN
IMMEDIATE`` for writers), the per-connection pragmas, the WAL switch and the
busy timeout a URL asks for.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import URL, Engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from uniqc_store.timeouts import DEFAULT_TIMEOUTS

#: Execution option for SQLite: how the ``begin`` hook opens a transaction:
#: ``"IMMEDIATE"`` (writers), ``"DEFERRED"`` (the default) or None (no BEGIN:
#: single-statement reads in autocommit, each statement its own snapshot).
SQLITE_BEGIN = "uniqc_sqlite_begin"
_SQLITE_BUSY = 5  # the result code (typeshed lacks sqlite3.SQLITE_BUSY)


def busy_timeout_ms(url: URL, default_ms: int = DEFAULT_TIMEOUTS.lock_wait_ms) -> int:
    """The SQLite busy timeout a URL asks for (``?timeout=`` in seconds), in ms;
    ``default_ms`` (the lock-wait bound) when it asks for none."""
    raw = url.query.get("timeout")
    if raw is None:
        return default_ms
    try:
        seconds = float(raw if isinstance(raw, str) else raw[-1])
    except ValueError:
        raise ValueError(
            f"timeout in a SQLite URL must be a number of seconds, not {raw!r}"
        ) from None
    if not 0 <= seconds <= 86_400:
        raise ValueError(f"timeout in a SQLite URL must be 0 to 86400 seconds, not {raw!r}")
    return int(seconds * 1000)


SYNCHRONOUS_LEVELS = ("FULL", "EXTRA", "NORMAL")

#: ``PRAGMA journal_size_limit``: once a checkpoint has emptied the WAL, the next
#: writer cuts the ``-wal`` file back to this size instead of leaving it as large
#: as its largest burst (SQLite keeps it otherwise, to reuse the space).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def checkpoint(conn: Connection, mode: str, busy_timeout_ms: int) -> None:
    """``PRAGMA wal_checkpoint(mode)`` on the held connection, best effort: never waits
    for another connection and never fails a call.

    ``PASSIVE`` (after bulk writes) copies what no reader still needs into the
    database file without taking any lock another connection waits on, so it
    cannot stall the writer queue or the bulk call itself; with
    ``journal_size_limit`` the file is then cut back by the next writer.
    ``TRUNCATE`` (on close) also empties the ``-wal`` file at once, when no
    reader is in the way: it runs with the busy timeout at 0, so a reader makes
    it give up (SQLite itself removes the file when the last connection closes).
    """
    raw = conn.connection.dbapi_connection
    if not isinstance(raw, sqlite3.Connection) or raw.in_transaction:
        return
    run = conn.exec_driver_sql  # through SQLAlchemy, so echo and listeners see it
    try:
        with contextlib.suppress(SQLAlchemyError):
            if mode != "PASSIVE":
                run("PRAGMA busy_timeout = 0")
            run(f"PRAGMA wal_checkpoint({mode})")
        if mode != "PASSIVE":
            run(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    finally:
        conn.rollback()  # ends SQLAlchemy's autobegun (empty) transaction


def _switch_to_wal(cursor: sqlite3.Cursor, timeout_ms: int) -> None:
    """``PRAGMA journal_mode = WAL``, waiting out other connections doing the same.

    The switch takes an exclusive lock without going through the busy
    handler, so processes opening a new file at once would otherwise fail
    with "database is locked"; they retry until the busy timeout instead.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == _SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


#: Engines (by dialect, which an engine shares with its ``execution_options``
#: copies) that already carry the SQLite recipe: it is installed once per engine.
_RECIPE_INSTALLED: WeakKeyDictionary[Any, bool] = WeakKeyDictionary()
#: Marks, in a pooled connection's ``info``, that the recipe's pragmas were applied.
_RECIPE_KEY = "uniqc_store_recipe"


def has_sqlite_recipe(engine: Engine) -> bool:
    """Whether ``install_sqlite_recipe`` already ran on this engine."""
    return _RECIPE_INSTALLED.get(engine.dialect, False)


def install_sqlite_recipe(
    engine: Engine,
    *,
    foreign_keys: bool = True,
    wal: bool = True,
    synchronous: str = "FULL",
    busy_ms: int | None = None,
) -> None:
    """Make pysqlite transactional for DDL too, and set our per-connection pragmas.

    ``isolation_level = None`` stops the driver from managing transactions;
    the ``begin`` hook then emits ``BEGIN`` itself, ``BEGIN IMMEDIATE`` when
    the connection carries the write-intent execution option, so writers
    queue on the busy timeout instead of failing with SQLITE_BUSY mid-way.
    Installed once per engine: a second call (another store on the same
    engine, or an engine from ``create_store_engine``) does nothing, since two
    ``begin`` hooks would send ``BEGIN`` twice.
    """
    if has_sqlite_recipe(engine):
        return
    _RECIPE_INSTALLED[engine.dialect] = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: sqlite3.Connection, record: Any, _proxy: Any) -> None:
        # a connection pooled before the recipe was installed gets it on first use
        if not record.info.get(_RECIPE_KEY):
            _on_connect(dbapi_connection, record)

    timeout_ms = busy_ms if busy_ms is not None else busy_timeout_ms(engine.url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        record.info[_RECIPE_KEY] = True
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            if wal:
                _switch_to_wal(cursor, timeout_ms)
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode is not None:
            conn.exec_driver_sql(f"BEGIN {mode}")
