"""Where a store's connections come from: one held SQLite connection, or a pool.

A SQLite store keeps one connection for its lifetime, guarded by a lock (as
the reference serialises calls with a per-instance lock), so a call costs a
statement, not a connect. A server store checks a pooled connection out per
unit of work. Both hand out a SQLAlchemy ``Connection`` through ``unit()``,
the door of ``door.py``: checkouts inside it are the executor's. Neither
begins or ends transactions: that is the executor's job.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from weakref import WeakSet

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from uniqc_store.db import door, watchdog
from uniqc_store.db.direct import echoing
from uniqc_store.db.metrics import Metrics, pool_exhausted
from uniqc_store.db.sqlite import SQLITE_BEGIN
from uniqc_store.db.urls import redact, sqlite_file_path
from uniqc_store.errors import DatabaseBusyError, DatabaseUnavailableError

#: Every live source, so a forked child can make each one start afresh.
_SOURCES: WeakSet[HeldConnection | PooledConnections] = WeakSet()
#: Connections a forked child inherited: kept referenced so they are never closed there.
_INHERITED: list[Connection] = []


def _after_fork_in_child() -> None:
    for source in list(_SOURCES):
        source.forget_parent_connections()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class HeldConnection:
    """One SQLite connection for the store's lifetime, one caller at a time."""

    def __init__(self, engine: Engine, lock_wait_seconds: float, metrics: Metrics) -> None:
        self.engine = engine
        self.lock = threading.RLock()
        self.lock_wait_seconds = lock_wait_seconds
        self.metrics = metrics
        self._held: Connection | None = None
        #: Whether the engine echoed when ``connection()`` last looked: inside a unit,
        #: whether it echoes now (entering the unit asked).
        self.echoes = False
        _SOURCES.add(self)

    def unit(self) -> HeldUnit:
        """The held connection, to this caller alone until the block ends.

        Waiting for another caller's unit is a lock wait like SQLite's own: it
        is bounded by the same ``lock_wait_seconds`` (``DatabaseBusyError``),
        and counted as a busy wait in the metrics.
        """
        return HeldUnit(self)

    def enter(self) -> tuple[Connection, threading.RLock, Token[str | None]]:
        """What entering ``unit()``'s block does, as a call: the connection, the lock
        taken and the door's token, which the caller gives back with ``leave`` in a
        ``finally`` (the executor's write path, which every SQLite write takes)."""
        lock = self.lock  # a forked child replaces it: the one taken is released
        if not lock.acquire(blocking=False) and not self._wait_for_lock(lock):
            raise DatabaseBusyError(
                f"another caller held this store's connection for more than "
                f"{self.lock_wait_seconds:g} s (Timeouts.lock_wait_seconds); try again. "
                "Nothing was written."
            )
        token = door.enter()
        try:
            return self.connection(), lock, token
        except BaseException:
            leave(lock, token)
            raise

    def _wait_for_lock(self, lock: threading.RLock) -> bool:
        started = time.perf_counter()
        try:
            return lock.acquire(timeout=self.lock_wait_seconds)
        finally:
            self.metrics.waited(time.perf_counter() - started)

    def connection(self) -> Connection:
        """The held connection (opened on first use); call with ``lock`` held.

        Its ``begin`` hook sends no ``BEGIN``: the executor opens write
        transactions with ``BEGIN IMMEDIATE`` itself, and reads run each
        statement as its own snapshot. SQLAlchemy fixes a ``Connection``'s echo
        when it is made (its listeners it looks up at each statement), so when
        echo is switched on or off the held connection is replaced by one that
        logs as the engine now does.
        """
        held = self._held
        echoes = echoing(self.engine)
        if held is None or held.closed or held.invalidated or echoes != self.echoes:
            if held is not None and not held.closed:
                held.close()
            held = self.engine.connect().execution_options(**{SQLITE_BEGIN: None})
            self._held, self.echoes = held, echoes
        return held

    def peek(self) -> Connection | None:
        """The held connection if one is open (for close-time maintenance)."""
        held = self._held
        return held if held is not None and not held.closed and not held.invalidated else None

    def close(self) -> None:
        with self.lock:
            if self._held is not None:
                self._held.close()
                self._held = None

    def forget_parent_connections(self) -> None:
        """In a forked child: never touch the parent's connection again.

        A SQLite connection carried across ``fork()`` does not hold the
        parent's file locks, so writes through it can be lost when the parent
        closes the database (SQLite forbids it). The child leaves it alone (not
        even closing it) and opens its own on the next call; the lock is new
        too, since the thread holding the parent's does not exist here. An
        in-memory database is the child's own copy, so it keeps that connection.
        """
        self.lock = threading.RLock()
        if sqlite_file_path(self.engine.url) is None:
            return
        if self._held is not None:
            _INHERITED.append(self._held)
            self._held = None
        self.engine.dispose(close=False)


class HeldUnit:
    """The block of ``HeldConnection.unit()``: ``enter`` and ``leave``.

    A class rather than a generator-based context manager: every call on a
    SQLite store enters one, and ``@contextmanager``'s generator costs several
    times as much as these two methods.
    """

    __slots__ = ("_door", "_lock", "_source")

    def __init__(self, source: HeldConnection) -> None:
        self._source = source

    def __enter__(self) -> Connection:
        conn, self._lock, self._door = self._source.enter()
        return conn

    def __exit__(self, *exc: object) -> None:
        leave(self._lock, self._door)


def leave(lock: threading.RLock, token: Token[str | None]) -> None:
    """End what ``HeldConnection.enter`` began."""
    door.leave(token)
    lock.release()


class PooledConnections:
    """A pooled server connection per unit of work, each unit under a deadline.

    ``unit(close_at, cancel_at)`` arms the watchdog (``watchdog.py``) with
    absolute ``time.monotonic()`` deadlines; a unit it had to cancel ends in
    ``DatabaseBusyError``, one whose socket it shut in
    ``DatabaseUnavailableError``, unless the unit already raised a more exact
    error (an unknown outcome). The alarm is disarmed before the connection
    goes back to the pool. A checkout that finds every pooled connection in
    use is counted as a busy wait in the metrics.
    """

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        _SOURCES.add(self)

    def _checkout(self) -> Connection:
        if not pool_exhausted(self.engine.pool):
            return self.engine.connect()
        started = time.perf_counter()
        try:
            return self.engine.connect()
        finally:
            self.metrics.waited(time.perf_counter() - started)

    @contextmanager
    def unit(self, close_at: float, cancel_at: float | None = None) -> Iterator[Connection]:
        with door.inside(), self._checkout() as conn:
            alarm = watchdog.arm(conn.connection.driver_connection, cancel_at, close_at)
            try:
                yield conn
            except DBAPIError as exc:
                stage = watchdog.disarm(alarm)
                if stage == watchdog.IDLE:
                    raise
                conn.invalidate()
                raise _deadline_error(stage, alarm, self.engine) from exc
            finally:
                if watchdog.disarm(alarm) != watchdog.IDLE and not conn.invalidated:
                    conn.invalidate()  # never reuse a connection the watchdog acted on

    def close(self) -> None:
        """Nothing is held between calls."""

    def forget_parent_connections(self) -> None:
        """In a forked child: the pool's sockets are the parent's; start a new pool."""
        self.engine.dispose(close=False)


def _deadline_error(stage: int, alarm: watchdog.Alarm, engine: Engine) -> Exception:
    """The store's error for a unit the watchdog ended (the URL's password hidden)."""
    where = f"the task database at {redact(engine.url)}"
    if stage == watchdog.CANCELLED:
        return DatabaseBusyError(
            f"{where} did not finish the call within {alarm.cancel_after:g} s "
            "(Timeouts.lock_wait_seconds): it was probably waiting for a lock another "
            "connection holds, and was cancelled; try again. Nothing was written."
        )
    return DatabaseUnavailableError(
        f"{where} did not answer within {alarm.close_after:g} s (the call's deadline, "
        "Timeouts.call_seconds or bulk_seconds): check that the server is running and "
        "reachable. Nothing was written."
    )


def source_for(
    engine: Engine, lock_wait_seconds: float, metrics: Metrics
) -> HeldConnection | PooledConnections:
    """A held connection for SQLite, a pool for servers (their waits counted in ``metrics``)."""
    if engine.dialect.name == "sqlite":
        return HeldConnection(engine, lock_wait_seconds, metrics)
    return PooledConnections(engine, metrics)
