"""Store calls inside a transaction the application owns (``TaskStore.using``).

A :class:`BorrowedExecutor` is the executor's mode for a connection lent by
the application: it hands the repository's work functions a ``Transaction``
over that connection and never begins, commits, rolls back or retries the
application's transaction: the application's commit decides.

Each call that writes runs in a SAVEPOINT of it, so a store call that raised
left the transaction as it was before the call, still usable on PostgreSQL
(where a failed statement would otherwise abort it) and without half a move on
MySQL (where a failed statement undoes only itself). The exception is a
transient error (deadlock, serialization failure): the server has aborted the
transaction, or will make it fail, and only running the whole of it again
helps, so that is ``DatabaseBusyError`` saying so, and the borrowed executor
refuses every later call of the block.

What :func:`borrowing` accepts:

- servers: a connection to the store's database (the same engine, or another
  one the server says is on the same database: checked once per ``using``);
- SQLite: a connection whose transaction begins with ``BEGIN IMMEDIATE`` as
  the store's own writes do (the store's recipe, ``sqlite.py``), so the store's
  statements never meet ``SQLITE_BUSY`` half-way: the one ``store.transaction()``
  yields, or one of the store's engine with the ``uniqc_sqlite_begin`` execution
  option at ``"IMMEDIATE"`` (not on ``sqlite://``, whose every connection is
  the store's own). A connection without the recipe is refused with the fix.

Statements run on the application's connection, which the application
checked out: they are marked as inside a unit for the door (``door.py``).
The executor's per-unit bounds (the watchdog's deadline, PostgreSQL's cancel
at ``lock_wait_seconds``) do not apply: the connection's own settings do.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Executable, text
from sqlalchemy.exc import DBAPIError

from uniqc_store.db import door
from uniqc_store.db.connections import HeldConnection
from uniqc_store.db.dialects import POSTGRESQL, SQLITE, family_of
from uniqc_store.db.direct import Row
from uniqc_store.db.executor import Executor, Transaction, is_transient
from uniqc_store.db.sqlite import SQLITE_BEGIN
from uniqc_store.db.urls import sqlite_file_path
from uniqc_store.errors import DatabaseBusyError, StoreError

T = TypeVar("T")

_DOOR = "using(): the application's connection"
_RETRY_WHOLE = (
    "the database aborted your transaction ({why}) during a store call made inside "
    "store.using(): roll it back and retry your whole transaction (the store does not "
    "retry inside it)"
)
_DOOMED = (
    "an earlier store call in this using() block hit a deadlock or serialization "
    "failure: roll your transaction back and run it again"
)
_ENDED = "this store belongs to a using() block that has ended: call the store itself"
_OWN = (
    "{call} runs transactions of its own, so it cannot run inside store.using(): call it "
    "on the store, outside the block"
)
_NO_RECIPE = (
    "this SQLite connection lacks the store's transaction recipe (BEGIN IMMEDIATE, so "
    "writers queue instead of failing half-way): run your statements in "
    "`with store.transaction() as conn:` (or on a connection of "
    'store.engine.execution_options(uniqc_sqlite_begin="IMMEDIATE")) and pass that '
    "conn to store.using()"
)
_MEMORY = (
    "on sqlite:// (in memory) every connection is the store's own: run your statements in "
    "`with store.transaction() as conn:` and pass that conn to store.using()"
)

#: What the server says a connection is connected to (compared when the engines differ):
#: on PostgreSQL the schema too, where the unqualified table names resolve.
_WHERE = {
    "postgresql": text(
        "SELECT current_database() || '.' || current_schema(), current_setting('port'), "
        "CAST(pg_postmaster_start_time() AS TEXT)"
    ),
    "mysql": text("SELECT DATABASE(), @@hostname, @@port"),
}
#: The store's own answer to ``_WHERE``, asked once per executor.
_STORE_WHERE: WeakKeyDictionary[Executor, tuple[Any, ...]] = WeakKeyDictionary()


class BorrowedExecutor(Executor):
    """An executor mode over the application's connection: no BEGIN, COMMIT or retry.

    It stands in for the store's executor in the store ``using()`` yields, so
    every repository method runs unchanged; the calls that own transactions
    (``close``, ``upgrade``, ``reading``, ``transaction``) are refused.
    """

    def __init__(self, lender: Executor, connection: Connection) -> None:
        # The lender's state, not a new one: no second source, listener or metrics.
        self.engine = lender.engine
        self.timeouts = lender.timeouts
        self.busy_timeout_ms = lender.busy_timeout_ms
        self.metrics = lender.metrics
        self.source = lender.source
        self._drivers = None  # never the direct path: the connection is SQLAlchemy's
        self._growth = lender._growth
        self._autocommit = False
        self.connection = connection
        self._open = True
        self._doomed = False

    def end(self) -> None:
        """The block ended: every later call (an iterator kept past it) is refused."""
        self._open = False

    @contextlib.contextmanager
    def _statements(self) -> Iterator[None]:
        """Run on the lent connection; a transient error is "retry your whole transaction",
        any other database error the store's own (the executor's boundary)."""
        if not self._open:
            raise StoreError(_ENDED)
        if self._doomed:
            raise DatabaseBusyError(_DOOMED)
        with self.translating():  # the boundary, as on the store's own units
            try:
                with door.inside(_DOOR):
                    yield
            except DBAPIError as exc:
                if not is_transient(exc, self.engine.dialect.name):
                    raise
                self._doomed = True
                why = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                raise DatabaseBusyError(_RETRY_WHOLE.format(why=why)) from exc

    # -- the units, on the lent connection ------------------------------------

    def fetch(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        with self._statements():
            return list(self.connection.execute(stmt, params or {}).all())

    def read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """``work`` on the lent connection, at its transaction's isolation level
        (``snapshot`` cannot be more than what the application's transaction gives)."""
        with self._statements():
            return work(self.connection)

    def write(self, work: Callable[[Transaction], T], *, direct_ok: bool = True) -> T:
        """``work`` in a SAVEPOINT of the application's transaction, released when it
        returns and rolled back to if it raises (the transaction stays usable)."""
        with self._statements():
            savepoint = self.connection.begin_nested()
            try:
                result = work(Transaction(self, self.connection, False))
            except BaseException:
                # after a deadlock MySQL has rolled the whole transaction back, savepoint too
                with contextlib.suppress(DBAPIError):
                    if savepoint.is_active:
                        savepoint.rollback()
                raise
            savepoint.commit()
            return result

    def write_one(self, stmt: Executable, params: Mapping[str, Any]) -> int:
        return self.write(lambda tx: tx.run(stmt, params))

    # -- what only the store's own units do --------------------------------

    @contextlib.contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        raise StoreError(_OWN.format(call="store.reading()") + "; or use your own connection")
        yield self.connection  # pragma: no cover  (refused when the block is entered)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        raise StoreError(_OWN.format(call="store.transaction()") + "; or use your own connection")
        yield self.connection  # pragma: no cover

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        raise StoreError(_OWN.format(call="upgrade()"))

    def checkpoint(self) -> None:
        raise StoreError(_OWN.format(call="a checkpoint"))

    def ensure_statistics(self) -> None:
        raise StoreError(_OWN.format(call="opening a store"))

    def close(self) -> None:
        raise StoreError(
            "the store using() yields is closed with its block; close the store itself after it"
        )


def refuse_inside(executor: Executor, call: str) -> None:
    """Refuse ``call`` (one that commits as it goes) on a store ``using()`` yielded."""
    if isinstance(executor, BorrowedExecutor):
        raise StoreError(_OWN.format(call=call))


@contextlib.contextmanager
def borrowing(lender: Executor, connection: Connection) -> Iterator[BorrowedExecutor]:
    """The lender's mode over ``connection`` for the block, once the connection is
    checked; the lender's own calls are refused in the block (``Executor.lent``)."""
    _check_connection(lender, connection)
    borrowed = BorrowedExecutor(lender, connection)
    try:
        with lender.lent():
            yield borrowed
    finally:
        borrowed.end()


def _check_connection(lender: Executor, connection: Connection) -> None:
    if isinstance(lender, BorrowedExecutor):
        raise StoreError(
            "store.using() inside a using() block: call the store the outer block yields"
        )
    if not isinstance(connection, Connection):
        raise TypeError(
            f"store.using() takes a SQLAlchemy Connection, not {type(connection).__name__}"
            " (for an ORM Session pass session.connection())"
        )
    if connection.closed or connection.invalidated:
        raise ValueError("store.using() was given a closed or invalidated connection")
    family = family_of(lender.engine.dialect.name)
    theirs = family_of(connection.dialect.name)
    if theirs is not family:
        raise ValueError(
            f"store.using() was given a {theirs.name} connection; the store's database is "
            f"{family.name}: pass a connection to the store's database"
        )
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        raise ValueError(
            "store.using() needs a connection in a transaction, not one in AUTOCOMMIT mode"
        )
    if family is SQLITE:
        _check_sqlite(lender, connection)
    elif connection.engine.pool is not lender.engine.pool:
        _check_same_database(lender, connection)


def _check_sqlite(lender: Executor, connection: Connection) -> None:
    """The store's own transaction, or a connection of the recipe beginning IMMEDIATE."""
    raw = connection.connection.dbapi_connection
    source = lender.source
    if isinstance(source, HeldConnection) and connection is source.peek():
        if lender.in_write_unit() and isinstance(raw, sqlite3.Connection) and raw.in_transaction:
            return  # store.transaction(): BEGIN IMMEDIATE on the store's connection
        raise ValueError(_NO_RECIPE)
    mine = sqlite_file_path(lender.engine.url)
    if mine is None:
        raise ValueError(_MEMORY)
    theirs = sqlite_file_path(connection.engine.url)
    if theirs is None or not _same_file(mine, theirs):
        raise ValueError(
            f"store.using() was given a connection to another SQLite database ({theirs}); "
            f"the store's is {mine}"
        )
    recipe = isinstance(raw, sqlite3.Connection) and raw.isolation_level is None
    if not recipe or connection.get_execution_options().get(SQLITE_BEGIN) != "IMMEDIATE":
        raise ValueError(_NO_RECIPE)


def _same_file(mine: Path, theirs: Path) -> bool:
    try:
        return mine.samefile(theirs)
    except OSError:
        return False


def _check_same_database(lender: Executor, connection: Connection) -> None:
    """Another engine's connection: the server must say it is on the store's database."""
    family = family_of(lender.engine.dialect.name)
    query = _WHERE["postgresql" if family is POSTGRESQL else "mysql"]
    with lender.translating():
        mine = _STORE_WHERE.get(lender)
        if mine is None:
            mine = _STORE_WHERE[lender] = tuple(lender.read(lambda c: c.execute(query).one()))
        with door.inside(_DOOR):
            theirs = tuple(connection.execute(query).one())
    if theirs != mine:
        raise ValueError(
            f"store.using() was given a connection to another database ({theirs[0]!r}, server "
            f"{theirs[1]}); the store's is {mine[0]!r}, server {mine[1]}"
        )
