"""How a store holds its connections and runs its statements.

A SQLite store keeps one connection for its lifetime, guarded by a lock
(as the reference serialises calls with a per-instance lock), so a call
costs a statement, not a connect. Its reads run without ``BEGIN`` (each
SQLite statement is its own snapshot); its writes run in a transaction
opened with ``BEGIN IMMEDIATE``, which waits on the busy timeout
instead of failing half-way. A server store checks a pooled connection out
per call and retries a transaction the server aborted (deadlock,
serialization failure) or a connection it dropped.

Statements are compiled once by SQLAlchemy and handed to the driver's
cursor, which costs a fraction of a full ``Connection.execute`` per call.
Server transactions are SQLAlchemy's; on the held SQLite connection
``BEGIN IMMEDIATE`` / ``COMMIT`` go to the driver the same way (SQLAlchemy's
begin and commit events cost as much as the statement itself there).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from weakref import WeakSet

from sqlalchemy import Connection, Delete, Engine, Insert, Select, Update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError

from .engine import BUSY_TIMEOUT_MS, SQLITE_BEGIN, sqlite_file_path
from .errors import PayloadTooLargeError

T = TypeVar("T")
Statement = Select[Any] | Insert | Delete | Update
Params = Mapping[str, Any] | list[dict[str, Any]]
#: A statement's text for the driver and its fixed parameter values.
DriverSQL = tuple[str, dict[str, Any]]
Row = Sequence[Any]

#: SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth a retry.
_RETRY_SQLSTATES = {"40001", "40P01"}
_RETRY_MYSQL_ERRNOS = {1205, 1213}
MAX_ATTEMPTS = 8
#: Rows a SQLite store writes before it first refreshes planner statistics; each
#: refresh doubles the next threshold, so the cost per write stays constant.
FIRST_STATISTICS_AT = 1000

_NAMED_SQLITE = sqlite_dialect.dialect(paramstyle="named")

#: Every live manager, so a forked child can make each one start afresh.
_MANAGERS: WeakSet[ConnectionManager] = WeakSet()
#: Connections a forked child inherited: kept referenced so they are never closed there.
_INHERITED: list[Connection] = []


def _after_fork_in_child() -> None:
    for manager in list(_MANAGERS):
        manager.forget_parent_connections()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def is_transient(exc: DBAPIError) -> bool:
    """Whether the server aborted the transaction and asks for it to run again
    (deadlock, serialization failure, lock wait timeout)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _RETRY_MYSQL_ERRNOS


class Transaction:
    """A write transaction in progress: what helpers receive (they never commit)."""

    __slots__ = ("_manager", "connection")

    def __init__(self, manager: ConnectionManager, connection: Connection) -> None:
        self._manager = manager
        self.connection = connection

    def run(self, stmt: Statement, params: Params) -> int:
        """Execute a DML statement (a list of parameter sets: executemany); the rowcount."""
        return self._manager.run(self.connection, stmt, params)

    def fetch(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]:
        """The rows of a query, seen from inside this transaction."""
        return self._manager.fetch_in(self.connection, stmt, params)


def _sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn``, or None on other drivers."""
    raw = conn.connection.dbapi_connection
    return raw if isinstance(raw, sqlite3.Connection) else None


def _refresh_statistics(conn: Connection, *, optimize: bool) -> None:
    """Give SQLite's planner statistics, best effort and without waiting for a lock.

    With statistics ``list(status=, limit=)`` walks the submit_time index and
    stops early instead of sorting every match (the reference never makes
    any). A table never analysed while holding rows gets a bounded
    ``ANALYZE``; after that, with ``optimize``, ``PRAGMA optimize`` refreshes
    what SQLite judges stale. Neither touches the schema or ``user_version``;
    when another connection holds the write lock this is simply skipped.
    """
    raw = _sqlite_driver(conn)
    if raw is None:
        return
    with contextlib.suppress(sqlite3.Error):  # statistics never fail or block a call
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            raw.execute("PRAGMA analysis_limit = 1000")
            if _never_analysed(raw, "tasks"):
                raw.execute("ANALYZE")
            elif optimize:
                raw.execute("PRAGMA optimize")
        finally:
            raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _never_analysed(raw: sqlite3.Connection, table: str) -> bool:
    """Whether ``table`` holds rows but has no statistics yet."""
    has_rows = raw.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
    if not has_rows:
        return False
    if raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None:
        return True
    return raw.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = ?", (table,)).fetchone() is None


class ConnectionManager:
    """Owns the store's connections; every statement goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._hold = self.dialect == "sqlite"
        self._lock = threading.RLock()
        self._held: Connection | None = None
        self._statistics_at = FIRST_STATISTICS_AT
        self._sql: dict[int, tuple[Statement, DriverSQL | None]] = {}
        named = engine.dialect.paramstyle in ("named", "pyformat")
        self._compile_for = _NAMED_SQLITE if self._hold else engine.dialect if named else None
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # psycopg switches autocommit without a round trip; MySQL drivers would pay two
        self._autocommit = self.dialect == "postgresql"
        _MANAGERS.add(self)

    def forget_parent_connections(self) -> None:
        """In a forked child: never touch the parent's connections again.

        A SQLite connection carried across ``fork()`` does not hold the
        parent's file locks, so writes through it can be lost when the parent
        closes the database (SQLite forbids it); a pooled server connection
        would share the parent's socket. The child leaves them alone (not even
        closing them) and opens its own on the next call. The lock is new too:
        the thread holding the parent's does not exist here. An in-memory
        SQLite database is the child's own copy, so it keeps that connection.
        """
        self._lock = threading.RLock()
        if self.dialect == "sqlite" and sqlite_file_path(self.engine.url) is None:
            return
        if self._held is not None:
            _INHERITED.append(self._held)
            self._held = None
        self.engine.dispose(close=False)

    def _connection(self) -> Connection:
        """The held SQLite connection; its transactions are begun by hand (see ``_write_once``)."""
        if self._held is None or self._held.closed or self._held.invalidated:
            self._held = self.engine.connect().execution_options(**{SQLITE_BEGIN: None})
        return self._held

    def _driver_sql(self, stmt: Statement) -> DriverSQL | None:
        """The statement's text for the driver (named parameters) and its fixed values,
        compiled once; None where the driver cannot take it as it is (expanding IN)."""
        if self._compile_for is None:
            return None
        cached = self._sql.get(id(stmt))
        if cached is None or cached[0] is not stmt:
            compiled = stmt.compile(dialect=self._compile_for)
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            # decided once: an expanding IN is rendered per call by SQLAlchemy
            driver = None if "POSTCOMPILE" in compiled.string else (compiled.string, fixed)
            cached = (stmt, driver)
            self._sql[id(stmt)] = cached
        return cached[1]

    def _execute(
        self, conn: Connection, sql: str, params: Params, fetch: bool
    ) -> tuple[int, list[Row]]:
        """Run compiled SQL on the driver's cursor; errors come back as SQLAlchemy's.

        These columns need no type conversion, so skipping SQLAlchemy's
        per-call execution machinery changes nothing but the cost.
        """
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            if isinstance(params, list):
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            return cursor.rowcount, list(cursor.fetchall()) if fetch else []
        except self._dbapi_error as exc:
            dropped = self.engine.dialect.is_disconnect(exc, raw, cursor)  # type: ignore[arg-type]
            if dropped:
                conn.invalidate()
            raise DBAPIError.instance(
                sql, None, exc, self._dbapi_error, connection_invalidated=dropped
            ) from exc
        finally:
            cursor.close()

    def fetch(self, stmt: Select[Any], params: Mapping[str, Any] | None = None) -> list[Row]:
        """All rows of a read-only statement, as tuples in the statement's column order."""
        if not self._hold:
            return self._retrying(lambda: self._fetch_pooled(stmt, params or {}))
        if self._driver_sql(stmt) is None:  # no BEGIN, and rolled back: see reading()
            with self.reading() as conn:
                return list(conn.execute(stmt, params or {}).all())
        with self._lock:
            return self.fetch_in(self._connection(), stmt, params or {})

    def _fetch_pooled(self, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]:
        with self.engine.connect() as conn:
            return self.fetch_in(conn, stmt, params)

    def run(self, conn: Connection, stmt: Statement, params: Params) -> int:
        """Execute a prebuilt DML statement in ``conn``'s transaction; return the rowcount.

        A list of parameter sets is one ``executemany``.
        """
        driver = self._driver_sql(stmt)
        if driver is None:
            return int(conn.execute(stmt, params).rowcount)
        sql, fixed = driver
        values = params if isinstance(params, list) else {**fixed, **params}
        return self._execute(conn, sql, values, fetch=False)[0]

    def fetch_in(self, conn: Connection, stmt: Select[Any], params: Mapping[str, Any]) -> list[Row]:
        """Rows of a query run on ``conn`` (inside its transaction, if any)."""
        driver = self._driver_sql(stmt)
        if driver is None:
            return list(conn.execute(stmt, params).all())
        sql, fixed = driver
        return self._execute(conn, sql, {**fixed, **params}, fetch=True)[1]

    def fetch_one(self, stmt: Select[Any], params: Mapping[str, Any] | None = None) -> Row | None:
        """The first row of a read-only statement, or None."""
        rows = self.fetch(stmt, params)
        return rows[0] if rows else None

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A SQLAlchemy connection for reads the fast path does not cover."""
        if not self._hold:
            with self.engine.connect() as conn:
                yield conn
            return
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            finally:
                conn.rollback()

    def write(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one transaction, committed when it returns."""
        return self._retrying(lambda: self._write_once(work))

    def write_one(self, stmt: Statement, params: Mapping[str, Any]) -> int:
        """Run one DML statement as its own transaction; return the rowcount.

        On PostgreSQL a single statement is atomic by itself, so it runs in
        autocommit: one round trip instead of BEGIN, the statement, COMMIT.
        """
        if not self._autocommit:
            return self.write(lambda tx: tx.run(stmt, params))
        return self._retrying(lambda: self._run_autocommit(stmt, params))

    def _run_autocommit(self, stmt: Statement, params: Mapping[str, Any]) -> int:
        """One statement on a pooled connection switched to autocommit for its length.

        The driver's switch is an attribute, no round trip; an autocommit
        execution option would cost more than the statement's own Python
        work (SQLAlchemy resets the isolation level at every check-in). The
        connection goes back to the pool as it came, even after an error.
        """
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.autocommit = True
            try:
                return self.run(conn, stmt, params)
            finally:
                with contextlib.suppress(self._dbapi_error):  # a dropped connection is discarded
                    driver.autocommit = False

    @staticmethod
    def _retrying(attempt_once: Callable[[], T]) -> T:
        """Run ``attempt_once``; again (with back-off) while the server asks for it,
        and once more on a fresh connection when a pooled one turns out dropped."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return attempt_once()
            except IntegrityError:
                raise
            except DBAPIError as exc:
                dropped_first = exc.connection_invalidated and attempt == 1
                if attempt == MAX_ATTEMPTS or not (dropped_first or is_transient(exc)):
                    raise
                time.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_once(self, work: Callable[[Transaction], T]) -> T:
        if not self._hold:
            with self.engine.connect() as conn, conn.begin():
                return work(Transaction(self, conn))
        with self._lock:
            conn = self._connection()
            self._execute(conn, "BEGIN IMMEDIATE", {}, fetch=False)
            try:
                result = work(Transaction(self, conn))
                if conn.in_transaction():  # a statement went through SQLAlchemy
                    conn.commit()
                else:
                    self._execute(conn, "COMMIT", {}, fetch=False)
            except BaseException:
                self._rollback(conn)
                raise
            self._keep_statistics(conn)
            return result

    def _keep_statistics(self, conn: Connection) -> None:
        """Refresh planner statistics while the tables grow, not only on close.

        SQLite counts the rows written (``total_changes``); at 1,000 and at
        each doubling after that the store does what ``close`` does, so a
        long-lived store's listings get the good plan too.
        """
        raw = _sqlite_driver(conn)
        if raw is not None and raw.total_changes >= self._statistics_at:
            self._statistics_at = 2 * raw.total_changes
            _refresh_statistics(conn, optimize=True)

    def ensure_statistics(self) -> None:
        """On open: a SQLite file holding rows but no statistics gets them."""
        if not self._hold:
            return
        with self._lock:
            _refresh_statistics(self._connection(), optimize=False)

    def _rollback(self, conn: Connection) -> None:
        """End a failed held-connection write, whoever began the transaction."""
        if conn.in_transaction():
            conn.rollback()
        raw = _sqlite_driver(conn)
        if raw is not None and raw.in_transaction:
            raw.rollback()

    def close(self) -> None:
        """Give the held connection back (the engine stays usable)."""
        with self._lock:
            if self._held is not None:
                if not self._held.closed and not self._held.invalidated:
                    _refresh_statistics(self._held, optimize=True)  # as SQLite advises, on close
                self._held.close()
                self._held = None

    @property
    def lock(self) -> threading.RLock:
        """Held while the caller needs the store to itself (e.g. deleting its file)."""
        return self._lock


#: MySQL errors meaning "this statement is larger than the server accepts".
_MYSQL_TOO_LARGE = {1153, 1301, 2006, 2013}


def translate_error(exc: DBAPIError, dialect: str) -> Exception:
    """Our error for a database error the caller can act on; else the original."""
    orig = exc.orig
    args = getattr(orig, "args", ())
    errno = args[0] if args else None
    if dialect in ("mysql", "mariadb") and errno in _MYSQL_TOO_LARGE:
        return PayloadTooLargeError(
            f"the server refused the statement ({orig}); it is probably larger than its "
            "max_allowed_packet: store a smaller payload or raise that limit. Nothing was written."
        )
    return exc
