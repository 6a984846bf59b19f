"""The one owner of a store's transactions: every statement runs through here.

``Executor.write(work)`` begins a transaction, hands ``work`` a
``Transaction`` (helpers run statements on it and never commit), then
commits, or rolls back if ``work`` raised. Nothing else begins, commits or
rolls back.

Statements run through SQLAlchemy's execution, so ``echo``, cursor events and
tracing see them. On a held SQLite connection, while nothing watches the
engine, a whole transaction (or a read) may take the direct path instead
(``direct.py`` says when that is equivalent); the choice is made once per
transaction, so one transaction never has two owners.

On SQLite a write transaction opens with ``BEGIN IMMEDIATE``: it takes the
write lock up front and waits on the busy timeout, so writers queue instead
of failing half-way, and everything a move reads stays as read until it
commits. Reads run without ``BEGIN`` (each statement its own snapshot). On
servers a transaction the server aborted (deadlock, serialization failure,
lock wait timeout) or a connection it dropped is run again, a bounded number
of times; never one whose COMMIT was sent when the connection dropped (it may
have been written: the caller is told the outcome is unknown).

A store call made inside another's unit of work on the same thread (from a
``modify`` change, say) is refused at once: it would wait on the outer call's
own locks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.exc import DBAPIError, IntegrityError

from . import direct, sqlite_statistics
from .connections import HeldConnection, PooledConnections, source_for
from .direct import DriverStatements, Row
from .errors import DatabaseUnavailableError, StoreError

T = TypeVar("T")
Params = Mapping[str, Any] | list[dict[str, Any]]

#: SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth a retry.
_RETRY_SQLSTATES = {"40001", "40P01"}
_RETRY_MYSQL_ERRNOS = {1205, 1213}
MAX_ATTEMPTS = 8

_NESTED = (
    "a store call was made inside another store call's transaction (from a modify() change?); "
    "it would wait on that call's own locks: make it before or after"
)
_COMMIT_UNKNOWN = (
    "the connection to the database dropped while the transaction was committing: it may or "
    "may not have been written; check before repeating the call"
)


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

    __slots__ = ("_direct", "_executor", "connection")

    def __init__(self, executor: Executor, connection: Connection, direct_path: bool) -> None:
        self._executor = executor
        self._direct = direct_path
        self.connection = connection

    def run(self, stmt: Executable, params: Params) -> int:
        """Execute a DML statement (a list of parameter sets: executemany); the rowcount."""
        if self._direct:
            return direct.execute(self.connection, self._executor.driver(stmt), params)[0]
        return int(self.connection.execute(stmt, params).rowcount)

    def fetch(self, stmt: Executable, params: Mapping[str, Any]) -> list[Row]:
        """The rows of a query, seen from inside this transaction."""
        if self._direct:
            return direct.execute(self.connection, self._executor.driver(stmt), params)[1]
        return list(self.connection.execute(stmt, params).all())


class Executor:
    """Runs a store's statements and owns its transactions."""

    def __init__(self, engine: Engine, busy_timeout_ms: int) -> None:
        self.engine = engine
        self.source: HeldConnection | PooledConnections = source_for(engine)
        self.busy_timeout_ms = busy_timeout_ms
        held = isinstance(self.source, HeldConnection)
        self._drivers = DriverStatements(engine) if held else None
        self._growth = sqlite_statistics.GrowthWatch()
        # psycopg switches autocommit without a round trip; MySQL drivers would pay two
        self._autocommit = engine.dialect.name == "postgresql"
        self._inside = threading.local()  # .write: a write unit runs on this thread

    def _not_nested(self) -> None:
        if getattr(self._inside, "write", False):
            raise StoreError(_NESTED)

    @contextlib.contextmanager
    def _write_unit(self) -> Iterator[None]:
        self._not_nested()
        self._inside.write = True
        try:
            yield
        finally:
            self._inside.write = False

    # -- the direct path ----------------------------------------------------

    def _direct_path(self) -> bool:
        """Whether this unit of work may skip SQLAlchemy's execution (see ``direct.py``)."""
        return self._drivers is not None and not direct.watched(self.engine)

    def driver(self, stmt: Executable) -> direct.DriverStatement:
        """The driver-ready form of a statement a direct transaction runs."""
        assert self._drivers is not None
        found = self._drivers.get(stmt)
        if found is None:
            raise AssertionError(f"not runnable on the direct path: {stmt}")
        return found

    def _direct_form(self, stmt: Executable) -> direct.DriverStatement | None:
        if not self._direct_path():
            return None
        assert self._drivers is not None
        return self._drivers.get(stmt)

    # -- reads ----------------------------------------------------------------

    def fetch(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        """All rows of a read-only statement, as tuples in the statement's column order."""
        values = params or {}
        self._not_nested()
        if not isinstance(self.source, HeldConnection):
            return self._retrying(lambda: self._fetch_pooled(stmt, values))
        form = self._direct_form(stmt)
        with self.source.unit(held=form is not None) as conn:
            if form is not None:
                return direct.execute(conn, form, values)[1]
            try:
                return list(conn.execute(stmt, values).all())
            finally:
                conn.rollback()  # ends the autobegun transaction; no BEGIN was sent

    def _fetch_pooled(self, stmt: Executable, params: Mapping[str, Any]) -> list[Row]:
        with self.source.unit() as conn:
            return list(conn.execute(stmt, params).all())

    def fetch_one(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Row | None:
        """The first row of a read-only statement, or None."""
        rows = self.fetch(stmt, params)
        return rows[0] if rows else None

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a connection for reads the prepared statements do not cover."""
        self._not_nested()
        with self.source.unit(held=self._direct_path()) as conn:
            try:
                return work(conn)
            finally:
                if conn.in_transaction():
                    conn.rollback()

    # -- writes ---------------------------------------------------------------

    def write(self, work: Callable[[Transaction], T], *, direct_ok: bool = True) -> T:
        """Run ``work`` in one transaction, committed when it returns.

        ``direct_ok=False`` when ``work`` runs statements that need
        SQLAlchemy's execution (expanding IN lists, ad-hoc queries).
        """
        with self._write_unit():
            if isinstance(self.source, HeldConnection):
                direct_path = direct_ok and self._direct_path()
                with self.source.unit(held=direct_path) as conn:
                    if direct_path:
                        result = self._write_direct(conn, work)
                    else:
                        result = self._write_observed(conn, work)
                    self._growth.after_write(conn, self.busy_timeout_ms)
                    return result
            return self._retrying(lambda: self._write_pooled(work))

    def write_one(self, stmt: Executable, params: Mapping[str, Any]) -> int:
        """Run one DML statement as its own transaction; return the rowcount.

        On PostgreSQL a single statement is atomic by itself, so it runs in
        autocommit: one round trip instead of BEGIN, the statement, COMMIT.
        """
        if self._autocommit:
            self._not_nested()
            return self._retrying(lambda: self._run_autocommit(stmt, params))
        direct_ok = self._direct_form(stmt) is not None
        return self.write(lambda tx: tx.run(stmt, params), direct_ok=direct_ok)

    def _write_direct(self, conn: Connection, work: Callable[[Transaction], T]) -> T:
        """BEGIN IMMEDIATE, the work and COMMIT, all on the driver's cursor."""
        try:
            direct.execute_text(conn, "BEGIN IMMEDIATE")
            result = work(Transaction(self, conn, True))
            direct.execute_text(conn, "COMMIT")
        except BaseException:
            raw = sqlite_statistics.sqlite_driver(conn)
            if raw is not None and raw.in_transaction:
                raw.rollback()
            raise
        return result

    def _write_observed(self, conn: Connection, work: Callable[[Transaction], T]) -> T:
        """The same through SQLAlchemy: its transaction, opened with BEGIN IMMEDIATE.

        The held connection's ``begin`` hook sends nothing, so the
        ``BEGIN IMMEDIATE`` statement is the start of SQLAlchemy's own
        (autobegun) transaction, which ``commit()`` / ``rollback()`` end.
        """
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            result = work(Transaction(self, conn, False))
        except BaseException:
            with contextlib.suppress(DBAPIError):  # a dropped connection has nothing to undo
                conn.rollback()
            raise
        conn.commit()
        return result

    def _write_pooled(self, work: Callable[[Transaction], T]) -> T:
        """BEGIN, the work, COMMIT on a pooled connection. A drop before COMMIT
        leaves nothing written (``_retrying`` runs it again); a drop during
        COMMIT may have written it, so that is reported, never run again."""
        with self.source.unit() as conn:
            transaction = conn.begin()
            try:
                result = work(Transaction(self, conn, False))
            except BaseException:
                with contextlib.suppress(DBAPIError):  # a dropped connection has nothing to undo
                    transaction.rollback()
                raise
            try:
                transaction.commit()
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise DatabaseUnavailableError(_COMMIT_UNKNOWN) from exc
                raise
            return result

    def _run_autocommit(self, stmt: Executable, params: Mapping[str, Any]) -> int:
        """One statement on a pooled connection switched to autocommit for its length.

        The driver's switch is an attribute, no round trip; an autocommit
        execution option would cost more than the statement's own Python
        work (SQLAlchemy resets the isolation level at every check-in). The
        connection goes back to the pool as it came, even after an error.
        """
        with self.source.unit() as conn:
            driver: Any = conn.connection.driver_connection
            if driver.info.transaction_status:  # not idle: e.g. a connect listener's query
                driver.rollback()  # what the pool's reset would have done
            driver.autocommit = True
            try:
                return int(conn.execute(stmt, params).rowcount)
            finally:
                with contextlib.suppress(conn.dialect.loaded_dbapi.Error):  # dropped: discarded
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

    # -- lifecycle --------------------------------------------------------------

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """Hold every other caller of this store off (e.g. while migrating)."""
        if isinstance(self.source, HeldConnection):
            return self.source.lock
        return contextlib.nullcontext()

    def ensure_statistics(self) -> None:
        """On open: a SQLite file holding rows but no statistics gets them."""
        if isinstance(self.source, HeldConnection):
            with self.source.unit() as conn:
                sqlite_statistics.refresh(conn, self.busy_timeout_ms, optimize=False)

    def close(self) -> None:
        """Give the held connection back, refreshing statistics first as SQLite advises."""
        if isinstance(self.source, HeldConnection):
            with self.source.lock:
                held = self.source.peek()
                if held is not None:
                    with contextlib.suppress(DBAPIError):
                        sqlite_statistics.refresh(held, self.busy_timeout_ms, optimize=True)
        self.source.close()
