"""How a store holds its connections and runs its transactions.

A SQLite store keeps one connection for its lifetime, guarded by a lock
(as the reference serialises calls with a per-instance lock), so a call
costs a statement, not a connect. Reads run without ``BEGIN`` (each SQLite
statement is its own snapshot); writes run under ``BEGIN IMMEDIATE`` and
wait on the busy timeout. A server store checks a pooled connection out per
call and retries a transaction the server aborted (deadlock, serialization).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from .engine import SQLITE_BEGIN

T = TypeVar("T")

#: SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth a retry.
_RETRY_SQLSTATES = {"40001", "40P01"}
_RETRY_MYSQL_ERRNOS = {1205, 1213}
MAX_ATTEMPTS = 8


def is_transient(exc: DBAPIError) -> bool:
    """Whether the server asked us to run the transaction again."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _RETRY_MYSQL_ERRNOS


class ConnectionManager:
    """Owns the store's connections; every transaction goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._hold = self.dialect == "sqlite"
        self._lock = threading.RLock()
        self._held: Connection | None = None

    def _connection(self) -> Connection:
        if self._held is None or self._held.closed:
            self._held = self.engine.connect()
        return self._held

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; nothing it does is committed."""
        if not self._hold:
            with self.engine.connect() as conn:
                yield conn
            return
        with self._lock:
            conn = self._connection().execution_options(**{SQLITE_BEGIN: None})
            try:
                yield conn
            finally:
                conn.rollback()

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction, committed when it returns."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._write_once(work)
            except IntegrityError:
                raise
            except DBAPIError as exc:
                if attempt == MAX_ATTEMPTS or not is_transient(exc):
                    raise
                time.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_once(self, work: Callable[[Connection], T]) -> T:
        if not self._hold:
            with self.engine.connect() as conn, conn.begin():
                return work(conn)
        with self._lock:
            conn = self._connection().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            try:
                with conn.begin():
                    return work(conn)
            except DBAPIError:
                self._discard_if_broken(conn)
                raise

    def _discard_if_broken(self, conn: Connection) -> None:
        if conn.invalidated:
            conn.close()
            self._held = None

    def close(self) -> None:
        """Give the held connection back (the engine stays usable)."""
        with self._lock:
            if self._held is not None:
                self._held.close()
                self._held = None

    @property
    def lock(self) -> threading.RLock:
        """Held while the caller needs the store to itself (e.g. deleting its file)."""
        return self._lock
