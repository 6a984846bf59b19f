"""The one owner of an engine's transactions: every statement runs through here.

There is one ``Executor`` per engine (:func:`executor_for`), shared by every
store on it, so its lock and its held connection are the engine's: two
stores on one ``sqlite://`` engine queue on one lock instead of sending
``BEGIN`` into each other's transactions.

``Executor.write(work)`` begins a transaction, hands ``work`` a
``Transaction`` (helpers run statements on it and never commit), then
commits, or rolls back if ``work`` raised. ``read(work)`` runs reads.
``reading()`` / ``transaction()`` are the same units as ``with`` blocks, for
the package's tools and for applications. Nothing else begins, commits or
rolls back, and ``door.py`` checks at run time that nothing in the package
connects beside these units.

Statements run through SQLAlchemy's execution, so ``echo``, cursor events and
tracing see them. On a held SQLite connection, while nothing watches the
engine, a whole transaction (or a read) may take the direct path instead
(``direct.py`` says when that is equivalent); the choice is made once per
transaction, so one transaction never has two owners.

On SQLite a write transaction opens with ``BEGIN IMMEDIATE``: it takes the
write lock up front and waits on the busy timeout, so writers queue instead
of failing half-way, and everything a move reads stays as read until it
commits. Reads run without ``BEGIN`` (each statement its own snapshot).

On servers a transaction the server aborted (deadlock, serialization
failure) is run again, with full-jitter back-off, and so is one whose
connection dropped before COMMIT (the server rolled it back), as long as
the unit's deadline allows: every attempt of a unit shares one deadline
(``Timeouts.call_seconds``, or ``bulk_seconds`` inside :func:`bulk`), which
the watchdog enforces on the socket. A lock wait that hit its bound is not
run again (it would wait as long again).
A write whose outcome cannot be known is never run again: the caller gets
``DatabaseUnavailableError`` saying it may or may not have been written
(see :meth:`Executor.write_one` for how the two cases are told apart).

A store call made inside another's unit of work on the same thread or task
(from a ``modify`` change, say) is refused at once: it would wait on the
outer call's own locks. So is a call on a store inside its ``using()`` block
(``borrowed.py``, the executor's mode over the application's connection).
"""

from __future__ import annotations

import contextlib
import random
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Executable, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, SQLAlchemyError

from uniqc_store.db import direct, door, sqlite_statistics
from uniqc_store.db.connections import HeldConnection, PooledConnections, leave, source_for
from uniqc_store.db.dialects import family_of
from uniqc_store.db.direct import DriverStatements, Row
from uniqc_store.db.metrics import (
    RETRY_CONFLICT,
    RETRY_DROPPED,
    Metrics,
    MetricsSnapshot,
    pool_figures,
)
from uniqc_store.db.sqlite import checkpoint
from uniqc_store.db.translation import store_error
from uniqc_store.errors import DatabaseUnavailableError, StoreError
from uniqc_store.timeouts import DEFAULT_TIMEOUTS, Timeouts

T = TypeVar("T")
Params = Mapping[str, Any] | list[dict[str, Any]]

MAX_ATTEMPTS = 8
#: Full-jitter back-off between attempts: a random sleep up to min(cap, base * 2**n).
BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.5


def backoff_pause(attempt: int) -> float:
    """The sleep after failed attempt ``attempt`` (1, 2, ...): full jitter, a random time
    up to min(cap, base * 2**attempt), so two that collided do not collide again in step.
    The one retry policy of the package (the executor's units, the lease table's creation)."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


_NESTED = (
    "a store call was made inside another store call's transaction (from a modify() change?); "
    "it would wait on that call's own locks: make it before or after"
)
_LENT = (
    "a call on the store was made inside its using() block: call the store the block yields "
    "(with store.using(conn) as tx_store: tx_store.save(...)), whose calls run in your "
    "transaction"
)
_COMMIT_UNKNOWN = (
    "the connection to the database dropped while the transaction was committing: it may or "
    "may not have been written; check before repeating the call"
)
_SENT_UNKNOWN = (
    "the connection to the database dropped after the statement was sent: it may or may not "
    "have been written; check before repeating the call"
)

#: The executors whose write unit the current thread or task is inside (outermost first).
_writing: ContextVar[tuple[int, ...]] = ContextVar("uniqc_store_writing", default=())
#: The executors whose store lent its calls to a ``using()`` block of the current thread or task.
_lent: ContextVar[tuple[int, ...]] = ContextVar("uniqc_store_lent", default=())
#: Whether the current call is a bulk call (deadline ``bulk_seconds``).
_bulk: ContextVar[bool] = ContextVar("uniqc_store_bulk", default=False)
#: How the current call waits between two attempts: ``time.sleep``, or, for a call the
#: async store runs on the event loop, a sleep that gives the loop back (``async_bridge``).
_pause: ContextVar[Callable[[float], None]] = ContextVar("uniqc_store_pause", default=time.sleep)
#: Called just before each COMMIT of the current call; raising from it rolls the
#: transaction back (the async store's SQLite worker: a caller that gave up, cancelled).
_before_commit: ContextVar[Callable[[], None] | None] = ContextVar(
    "uniqc_store_before_commit", default=None
)
#: Where an engine keeps its executor (on its dialect, which ``execution_options``
#: copies of the engine share and which lives exactly as long as the engine).
_EXECUTOR_KEY = "_uniqc_store_executor"
_registering = threading.Lock()


def executor_for(engine: Engine, timeouts: Timeouts | None = None) -> Executor:
    """The engine's executor, made on first use and shared by every store on the engine.

    Its timeouts are the engine's too: a later store asking for other ones is refused
    rather than silently given the first store's.
    """
    dialect: Any = engine.dialect
    found: Executor | None = getattr(dialect, _EXECUTOR_KEY, None)
    if found is None:
        with _registering:
            found = getattr(dialect, _EXECUTOR_KEY, None)
            if found is None:
                found = Executor(engine, timeouts or DEFAULT_TIMEOUTS)
                setattr(dialect, _EXECUTOR_KEY, found)
    if timeouts is not None and timeouts != found.timeouts:
        raise ValueError(
            f"the stores of one engine share its timeouts ({found.timeouts}); this one asks "
            f"for {timeouts}: give it its own engine, or the same timeouts"
        )
    return found


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Mark the calls in the block as bulk calls: their units get ``Timeouts.bulk_seconds``."""
    token = _bulk.set(True)
    try:
        yield
    finally:
        _bulk.reset(token)


@contextlib.contextmanager
def calls_run_with(
    pause: Callable[[float], None] | None = None, before_commit: Callable[[], None] | None = None
) -> Iterator[None]:
    """Run the calls of the block with another back-off ``pause`` (seconds) and a hook
    called before each COMMIT: how the async store (``async_bridge``) keeps the event
    loop free and rolls a cancelled call back, with every other rule shared."""
    tokens = (_pause.set(pause or _pause.get()), _before_commit.set(before_commit))
    try:
        yield
    finally:
        _before_commit.reset(tokens[1])
        _pause.reset(tokens[0])


def _commit_hook() -> None:
    hook = _before_commit.get()
    if hook is not None:
        hook()


def is_transient(exc: DBAPIError, backend: str) -> bool:
    """Whether the server aborted the transaction and asks for it to run again
    (deadlock, serialization failure: ``Family.retry``)."""
    return family_of(backend).asks_for_retry(exc.orig)


class Transaction:
    """A write transaction in progress: what helpers receive (they never commit)."""

    __slots__ = ("_direct", "_executor", "_raw", "connection")

    def __init__(
        self, executor: Executor, connection: Connection, direct_path: bool, raw: Any = None
    ) -> None:
        self._executor = executor
        self._direct = direct_path
        self._raw = raw  # the driver's connection, on the direct path
        self.connection = connection

    def run(self, stmt: Executable, params: Params) -> int:
        """Execute a DML statement (a list of parameter sets: executemany); the rowcount."""
        if self._direct:
            form = self._executor.driver(stmt)
            return direct.execute(self.connection, form, params, self._raw)[0]
        return int(self.connection.execute(stmt, params).rowcount)

    def run_form(
        self, stmt: Executable, form: direct.DriverStatement, params: Mapping[str, Any]
    ) -> int:
        """``run`` given the statement's driver form already looked up (``write_one``)."""
        if self._direct:
            return direct.execute(self.connection, form, params, self._raw)[0]
        return int(self.connection.execute(stmt, params).rowcount)

    def fetch(self, stmt: Executable, params: Mapping[str, Any]) -> list[Row]:
        """The rows of a query, seen from inside this transaction."""
        if self._direct:
            form = self._executor.driver(stmt)
            return direct.execute(self.connection, form, params, self._raw)[1]
        return list(self.connection.execute(stmt, params).all())


class Executor:
    """Runs an engine's statements and owns its transactions."""

    def __init__(self, engine: Engine, timeouts: Timeouts) -> None:
        from uniqc_store.db.sqlite import busy_timeout_ms

        self.engine = engine
        self.timeouts = timeouts
        self.busy_timeout_ms = busy_timeout_ms(engine.url, timeouts.lock_wait_ms)
        #: The engine's figures: every store on it records here (``metrics.py``).
        self.metrics = Metrics()
        self.source: HeldConnection | PooledConnections = source_for(
            engine, self.busy_timeout_ms / 1000, self.metrics
        )
        held = isinstance(self.source, HeldConnection)
        self._drivers = DriverStatements(engine) if held else None
        self._growth = sqlite_statistics.GrowthWatch()
        # PostgreSQL runs a single statement in autocommit: one round trip, not three
        self._autocommit = engine.dialect.name == "postgresql"
        door.guard(engine)
        if self._autocommit:
            event.listen(engine, "checkout", _refuse_connection_closed_while_idle)

    # -- nesting ----------------------------------------------------------------

    def _not_nested(self) -> None:
        if id(self) in _lent.get():
            raise StoreError(_LENT)
        if id(self) in _writing.get():
            raise StoreError(_NESTED)

    def in_write_unit(self) -> bool:
        """Whether the current thread or task is inside one of this executor's write units."""
        return id(self) in _writing.get()

    @contextlib.contextmanager
    def lent(self) -> Iterator[None]:
        """Mark the block as a ``using()`` block of this executor's store
        (``borrowed.py``): the store's own calls in it are refused, since they
        would run beside the application's transaction, not in it."""
        token = _lent.set((*_lent.get(), id(self)))
        try:
            yield
        finally:
            _lent.reset(token)

    @contextlib.contextmanager
    def _write_unit(self) -> Iterator[None]:
        self._not_nested()
        token = _writing.set((*_writing.get(), id(self)))
        try:
            yield
        finally:
            _writing.reset(token)

    def refuse_nested(self) -> None:
        """Refuse a call made inside one of this executor's units by the same thread or
        task, before it queues anywhere (the async store's SQLite worker)."""
        self._not_nested()

    def inside_unit(self) -> contextlib.AbstractContextManager[None]:
        """Count the current thread or task as inside one of this executor's units, so a
        store call it makes is refused as nested (the async store's SQLite blocks)."""
        return self._write_unit()

    # -- the direct path ----------------------------------------------------

    def driver(self, stmt: Executable) -> direct.DriverStatement:
        """The driver-ready form of a statement a direct transaction runs."""
        assert self._drivers is not None
        found = self._drivers.get(stmt)
        if found is None:
            raise AssertionError(f"not runnable on the direct path: {stmt}")
        return found

    # -- reads ----------------------------------------------------------------

    def fetch(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        """All rows of a read-only statement, as tuples in the statement's column order."""
        values = params or {}
        self._not_nested()
        source = self.source
        if not isinstance(source, HeldConnection):
            return self._retrying(lambda: self._fetch_pooled(stmt, values))
        assert self._drivers is not None
        form = self._drivers.get(stmt)
        with source.unit() as conn:
            # nobody watching (the unit's entry re-made the connection if the engine's
            # echo had changed, so ``source.echoes`` is the engine's): the direct path
            if form is not None and not (source.echoes or direct.listening(self.engine)):
                return direct.execute(conn, form, values)[1]
            try:
                return list(conn.execute(stmt, values).all())
            finally:
                conn.rollback()  # ends the autobegun transaction; no BEGIN was sent

    def _fetch_pooled(self, stmt: Executable, params: Mapping[str, Any]) -> list[Row]:
        """One read statement on a pooled connection. On PostgreSQL it runs in
        autocommit: one round trip, where psycopg's BEGIN and the pool's ROLLBACK
        would make it three (a single statement sees one snapshot either way)."""
        with self._unit() as conn:
            if self._autocommit:
                _switch_to_autocommit(conn)
            return list(conn.execute(stmt, params).all())

    def _deadline(self) -> float:
        """When a unit of work starting now must be over (``time.monotonic()``)."""
        bound = self.timeouts.bulk_seconds if _bulk.get() else self.timeouts.call_seconds
        return time.monotonic() + bound

    def _unit(self, deadline: float | None = None) -> contextlib.AbstractContextManager[Connection]:
        """A connection for one attempt: the held one, or a pooled one under the deadline.

        On PostgreSQL a call (not a bulk call) still running after
        ``lock_wait_seconds`` is cancelled: the server's ``lock_timeout`` would
        need a ``SET`` per session or transaction, which a pooler in
        transaction mode does not keep, and it would not bound the one-round-trip
        autocommit statements.
        """
        if isinstance(self.source, HeldConnection):
            return self.source.unit()
        close_at = deadline if deadline is not None else self._deadline()
        cancel_at = None
        if self._autocommit and not _bulk.get():  # PostgreSQL
            cancel_at = min(time.monotonic() + self.timeouts.lock_wait_seconds, close_at)
        return self.source.unit(close_at, cancel_at)

    def fetch_one(self, stmt: Executable, params: Mapping[str, Any] | None = None) -> Row | None:
        """The first row of a read-only statement, or None."""
        rows = self.fetch(stmt, params)
        return rows[0] if rows else None

    def read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``work`` on a connection for reads the prepared statements do not cover.

        ``snapshot=True``: every statement of ``work`` sees one snapshot (a read
        transaction; REPEATABLE READ on servers). On servers a dropped connection
        or a transient error runs ``work`` again, so it must only read.
        """

        def once() -> T:
            with self._read_unit(snapshot) as conn:
                return work(conn)

        if isinstance(self.source, HeldConnection):
            return once()
        return self._retrying(once)

    @contextlib.contextmanager
    def _read_unit(self, snapshot: bool) -> Iterator[Connection]:
        self._not_nested()
        with self._unit() as conn:
            try:
                if snapshot:
                    if isinstance(self.source, HeldConnection):
                        conn.exec_driver_sql("BEGIN")
                    else:
                        conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()

    @contextlib.contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read unit as a block (not retried: a block cannot run twice); errors are
        the store's. A block runs as long as its caller makes it (an export, say), so
        its deadline is ``bulk_seconds``."""
        with self.translating(), bulk(), self._read_unit(snapshot) as conn:
            yield conn

    # -- writes ---------------------------------------------------------------

    def write(self, work: Callable[[Transaction], T], *, direct_ok: bool = True) -> T:
        """Run ``work`` in one transaction, committed when it returns.

        ``direct_ok=False`` when ``work`` runs statements that need
        SQLAlchemy's execution (expanding IN lists, ad-hoc queries).
        """
        if isinstance(self.source, HeldConnection):
            return self._write_held(work, direct_ok)  # SQLite waits on its busy timeout
        deadline = self._deadline()

        def once() -> T:
            with self._write_attempt(deadline) as tx:
                return work(tx)

        with self._write_unit():
            return self._retrying(once, deadline)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction as a block: committed when it ends, rolled back if it
        raises; not retried (a block cannot run twice); errors are the store's;
        deadline ``bulk_seconds``, as for ``reading()``."""
        with self.translating(), bulk(), self._write_unit(), self._write_attempt() as tx:
            yield tx.connection

    def _write_held(
        self,
        work: Callable[[Transaction], T],
        direct_ok: bool,
        alone: tuple[direct.DriverStatement, Mapping[str, Any]] | None = None,
    ) -> T:
        """One write transaction on the held SQLite connection.

        Written out flat, since every SQLite write comes here and each Python call
        on the way costs about as much as the check it makes: what
        ``_write_unit()``, the held unit (``HeldConnection.enter`` / ``leave``)
        and the transaction blocks do, in the same order. ``alone``: ``work`` is
        that one statement (``write_one``), which the direct path runs in one call.
        """
        me = id(self)
        if me in _lent.get() or me in _writing.get():
            self._not_nested()  # raises, saying which
        token = _writing.set((*_writing.get(), me))
        source: Any = self.source
        try:
            conn, lock, door_token = source.enter()
            try:
                raw = conn.connection.dbapi_connection
                if direct_ok and not (
                    source.echoes or direct.listening(self.engine)
                ):  # as in fetch
                    try:
                        if alone is None:
                            result = self._direct_transaction(conn, raw, work)
                        else:
                            form, params = alone
                            hook = _before_commit.get()
                            rowcount = direct.execute_alone(conn, raw, form, params, hook)
                            result = cast(T, rowcount)  # ``work`` returns the rowcount too
                    except BaseException:
                        _roll_back_direct(conn)
                        raise
                else:
                    with self._observed_transaction(conn) as tx:
                        result = work(tx)
                self._growth.after_write(conn, raw, self.busy_timeout_ms)
                if _bulk.get():  # a large write: its WAL frames go to the file now
                    checkpoint(conn, "PASSIVE", self.busy_timeout_ms)
            finally:
                leave(lock, door_token)
            return result
        finally:
            _writing.reset(token)

    def _after_held_write(self, conn: Connection, raw: Any) -> None:
        """Statistics upkeep after a committed SQLite write (``raw``: the driver's
        connection), and a checkpoint after a bulk one."""
        self._growth.after_write(conn, raw, self.busy_timeout_ms)
        if _bulk.get():  # a large write: its WAL frames go to the file now
            checkpoint(conn, "PASSIVE", self.busy_timeout_ms)

    @contextlib.contextmanager
    def _write_attempt(self, deadline: float | None = None) -> Iterator[Transaction]:
        """One attempt at a write transaction through SQLAlchemy's execution, on the
        held connection (``transaction()`` blocks) or a pooled one."""
        if not isinstance(self.source, HeldConnection):
            with self._pooled_transaction(deadline) as tx:
                yield tx
            return
        with self.source.unit() as conn:
            with self._observed_transaction(conn) as tx:
                yield tx
            self._after_held_write(conn, conn.connection.dbapi_connection)

    def write_one(self, stmt: Executable, params: Mapping[str, Any]) -> int:
        """Run one DML statement as its own transaction; return the rowcount.

        On PostgreSQL a single statement is atomic by itself, so it runs in
        autocommit: one round trip instead of BEGIN, the statement, COMMIT.
        There a dropped connection cannot be retried blindly: the statement may
        have committed before the answer was lost. The two cases are told apart
        at checkout, before anything is sent: a pooled connection whose socket
        already shows the server's close (or that the driver knows is broken) is
        replaced by the pool (``_refuse_connection_closed_while_idle``), so a
        connection found dead before the statement is retried on a fresh one; a
        drop once the statement was sent is ``DatabaseUnavailableError``
        (outcome unknown), never run again.
        """
        if self._autocommit:
            self._not_nested()
            deadline = self._deadline()
            return self._retrying(lambda: self._run_autocommit(stmt, params, deadline), deadline)
        if self._drivers is None:  # a server without autocommit (MySQL)
            return self.write(lambda tx: tx.run(stmt, params))
        # whether anybody watches is asked once, inside the unit (``_write_held``)
        form = self._drivers.get(stmt)
        if form is None:
            return self._write_held(lambda tx: tx.run(stmt, params), False)
        return self._write_held(lambda tx: tx.run_form(stmt, form, params), True, (form, params))

    def _direct_transaction(
        self, conn: Connection, raw: Any, work: Callable[[Transaction], T]
    ) -> T:
        """BEGIN IMMEDIATE, ``work`` and COMMIT, all on the driver's cursor (``raw``:
        the driver's connection of ``conn``); rolling back is the caller's."""
        direct.execute_text(conn, "BEGIN IMMEDIATE", raw)
        result = work(Transaction(self, conn, True, raw))
        _commit_hook()
        direct.execute_text(conn, "COMMIT", raw)
        return result

    @contextlib.contextmanager
    def _observed_transaction(self, conn: Connection) -> Iterator[Transaction]:
        """The same through SQLAlchemy: its transaction, opened with BEGIN IMMEDIATE.

        The connection's ``begin`` hook sends nothing, so the ``BEGIN
        IMMEDIATE`` statement is the start of SQLAlchemy's own (autobegun)
        transaction, which ``commit()`` / ``rollback()`` end.
        """
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield Transaction(self, conn, False)
            _commit_hook()
        except BaseException:
            with contextlib.suppress(DBAPIError):  # a dropped connection has nothing to undo
                conn.rollback()
            raise
        conn.commit()

    @contextlib.contextmanager
    def _pooled_transaction(self, deadline: float | None) -> Iterator[Transaction]:
        """BEGIN, the work, COMMIT on a pooled connection. A drop before COMMIT
        leaves nothing written (``_retrying`` runs it again); a drop during
        COMMIT may have written it, so that is reported, never run again."""
        with self._unit(deadline) as conn:
            transaction = conn.begin()
            try:
                yield Transaction(self, conn, False)
                _commit_hook()
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

    def _run_autocommit(self, stmt: Executable, params: Mapping[str, Any], deadline: float) -> int:
        """One statement on a pooled connection switched to autocommit for its length.

        Through SQLAlchemy's own isolation level, so its log and its
        ``commit`` event say what happened (the server committed the
        statement); the pool switches the connection back at check-in.
        """
        with self._unit(deadline) as conn:
            _switch_to_autocommit(conn)
            try:
                with conn.begin():
                    return int(conn.execute(stmt, params).rowcount)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise DatabaseUnavailableError(_SENT_UNKNOWN) from exc
                raise

    def _retrying(self, attempt_once: Callable[[], T], deadline: float | None = None) -> T:
        """Run ``attempt_once``; again while the server asks for it, and once more on a
        fresh connection when a pooled one turns out dropped, while the deadline allows.

        The sleep between attempts is "full jitter" (a random time up to the
        exponential bound), so two transactions that collided do not collide
        again in step; no attempt starts whose back-off would end past the deadline.
        """
        deadline = deadline if deadline is not None else self._deadline()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return attempt_once()
            except IntegrityError:
                raise
            except DBAPIError as exc:
                dropped_first = exc.connection_invalidated and attempt == 1
                again = dropped_first or is_transient(exc, self.engine.dialect.name)
                if attempt == MAX_ATTEMPTS or not again:
                    raise
                pause = backoff_pause(attempt)
                if time.monotonic() + pause >= deadline:
                    raise
                self.metrics.retried(RETRY_DROPPED if dropped_first else RETRY_CONFLICT)
                _pause.get()(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def translating(self) -> Iterator[None]:
        """Database errors raised in the block become the store's own (``translation``)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise store_error(exc, self.engine.url) from exc

    # -- lifecycle --------------------------------------------------------------

    def metrics_snapshot(self) -> MetricsSnapshot:
        """The engine's figures now, with its pool's (servers; None on SQLite)."""
        pooled = isinstance(self.source, PooledConnections)
        return self.metrics.snapshot(pool_figures(self.engine.pool) if pooled else None)

    def exclusive(self) -> contextlib.AbstractContextManager[Any]:
        """Hold every other caller of this engine off (e.g. while migrating)."""
        if isinstance(self.source, HeldConnection):
            return self.source.lock
        return contextlib.nullcontext()

    def checkpoint(self) -> None:
        """On SQLite, ``PRAGMA wal_checkpoint(PASSIVE)`` now (after a large write made of
        several units); best effort, never waits."""
        if isinstance(self.source, HeldConnection):
            with self.source.unit() as conn:
                checkpoint(conn, "PASSIVE", self.busy_timeout_ms)

    def ensure_statistics(self) -> None:
        """On open: a SQLite file holding rows but no statistics gets them."""
        if isinstance(self.source, HeldConnection):
            with self.source.unit() as conn:
                sqlite_statistics.refresh(conn, self.busy_timeout_ms, optimize=False)

    def close(self) -> None:
        """Give the held connection back, refreshing statistics first as SQLite advises,
        and emptying the ``-wal`` file if no other connection is reading it.

        Another store on the same engine opens it again on its next call."""
        if isinstance(self.source, HeldConnection):
            with self.source.lock:
                held = self.source.peek()
                if held is not None:
                    with contextlib.suppress(DBAPIError):
                        sqlite_statistics.refresh(held, self.busy_timeout_ms, optimize=True)
                        checkpoint(held, "TRUNCATE", self.busy_timeout_ms)
        self.source.close()


def _roll_back_direct(conn: Connection) -> None:
    """After a direct transaction failed: roll it back if it is still open (asked of the
    connection again, since a dropped one was invalidated and replaced)."""
    raw = sqlite_statistics.sqlite_driver(conn)
    if raw is not None and raw.in_transaction:
        raw.rollback()


def _switch_to_autocommit(conn: Connection) -> None:
    """Put a pooled PostgreSQL connection in autocommit for the unit's length, through
    SQLAlchemy's own isolation level (its log and ``commit`` event see it; the pool
    switches it back at check-in, with no round trip)."""
    driver: Any = conn.connection.driver_connection
    if driver.info.transaction_status:  # not idle: e.g. a connect listener's query
        # what the pool's reset would have done (through the DB-API connection,
        # which is psycopg's own or, under the async store, its adapter)
        conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
    conn.execution_options(isolation_level="AUTOCOMMIT")


def _refuse_connection_closed_while_idle(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Replace a pooled connection the server closed while it sat idle in the pool.

    An idle connection has nothing to read: a readable socket means the
    server hung up (or sent something unasked, which costs a needless
    reconnect, never a wrong answer). Checked with a zero-timeout poll, no
    round trip; raising ``DisconnectionError`` makes the pool connect afresh. The
    driver's own connection is looked at (under the async store the DB-API one is
    SQLAlchemy's adapter of psycopg's ``AsyncConnection``).
    """
    driver = getattr(_proxy, "driver_connection", None) or dbapi_connection
    if getattr(driver, "closed", False) or getattr(driver, "broken", False):
        raise DisconnectionError("the connection was closed while idle in the pool")
    fileno = getattr(driver, "fileno", None)
    if fileno is None:
        return
    if _readable(fileno()):
        raise DisconnectionError("the server closed the connection while it was idle")


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read now (``poll``; ``select`` where there is none)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])
