"""The migration lock: one upgrader of a database at a time, on every way of deploying it.

- PostgreSQL, direct or behind PgBouncer in transaction mode:
  ``pg_advisory_xact_lock``, taken by an open transaction on a connection of its
  own and held for the whole run. A session lock behind a transaction pooler is
  taken on one server connection and "released" on another (so never); an open
  transaction keeps its server connection, and the lock ends with it or with
  the client.
- MySQL / MariaDB: ``GET_LOCK`` on the migration's connection (gone with it).
- MariaDB Galera (``wsrep_on``): a lease row in ``uniqc_store_migration_lock``.
  ``GET_LOCK`` is local to a node (two nodes both get it); a committed row is
  certified and replicated to every node.
- SQLite file: ``flock`` on ``<file>.lock`` (SQLite's own locks are POSIX locks
  on the file itself).
- SQLite file where ``fcntl`` is missing (Windows): ``filelock.FileLock`` on
  ``<file>.lock``. Windows is untested: the suite forces this path on Linux.

Every wait is bounded by ``Timeouts.migration_lock_seconds``; then
``DatabaseBusyError`` names the holder when the database can tell (PostgreSQL:
the holder's application name, backend pid, address and start; MySQL: its
connection id, user and host; the lease and the lock file: the owner recorded).
The lease is in ``lease.py``; what every lock shares in ``lockwait.py``.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from uniqc_store.db import door, watchdog
from uniqc_store.db.dialects import is_mysql
from uniqc_store.db.urls import sqlite_file_path
from uniqc_store.errors import StoreError
from uniqc_store.migrations.lease import lease
from uniqc_store.migrations.lockwait import (
    LOCK_NAME,
    POLL_CAP_S,
    busy_error,
    owner_name,
    sqlstate_of,
)
from uniqc_store.records import APPLICATION_ID
from uniqc_store.timeouts import DEFAULT_TIMEOUTS, Timeouts

try:  # POSIX only; elsewhere the filelock package takes the SQLite lock file.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


#: Key of PostgreSQL's advisory lock (per database).
ADVISORY_LOCK_KEY = APPLICATION_ID

Lock = Callable[[Connection, Timeouts], contextlib.AbstractContextManager[None]]


def lock_method(conn: Connection) -> str:
    """The lock this database needs (see the module's table)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return "advisory"
    if is_mysql(dialect):
        return "lease" if is_galera(conn) else "get_lock"
    return "flock" if fcntl is not None else "filelock"


def is_galera(conn: Connection) -> bool:
    """Whether a MySQL/MariaDB connection is to a Galera node (MySQL has no such variable)."""
    row = conn.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").first()
    conn.rollback()
    return row is not None and str(row[1]).upper() == "ON"


@contextlib.contextmanager
def migration_lock(
    conn: Connection, timeouts: Timeouts = DEFAULT_TIMEOUTS, method: str | None = None
) -> Iterator[None]:
    """Hold this database's migration lock around the block (``method``: see ``LOCKS``)."""
    lock = LOCKS[method or lock_method(conn)]
    with door.exempt("the migration lock"), lock(conn, timeouts):
        yield


@contextlib.contextmanager
def _advisory(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """PostgreSQL: a transaction-scoped advisory lock on a connection of its own."""
    wait = timeouts.migration_lock_wait
    with _own_connection(conn) as holder, _watched(holder, timeouts.migration_seconds):
        holder.execute(
            text(
                "SELECT set_config('lock_timeout', :t, true), "
                "set_config('application_name', :a, true)"
            ),
            {"t": f"{int(wait * 1000)}ms", "a": owner_name()[:63]},
        )
        try:
            holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        except DBAPIError as exc:
            if sqlstate_of(exc) != "55P03":  # lock_not_available: lock_timeout ran out
                raise
            holder.rollback()
            raise busy_error(wait, _advisory_holder(holder)) from exc
        try:
            yield
        finally:
            holder.rollback()  # ends the transaction, and with it the lock


@contextlib.contextmanager
def _own_connection(conn: Connection) -> Iterator[Connection]:
    """A connection beside ``conn`` from a pool of its own (the same connect arguments and
    pool events), so an engine with ``pool_size=1`` can still hold the lock."""
    engine = sqlalchemy.create_engine(conn.engine.url, pool=conn.engine.pool.recreate())
    try:
        with engine.connect() as own:
            yield own
    finally:
        engine.dispose()


@contextlib.contextmanager
def _watched(conn: Connection, seconds: float) -> Iterator[None]:
    """The watchdog over a lock's own connection: a server that stops answering ends the
    wait (and the run) at the migration's deadline instead of never."""
    alarm = watchdog.arm(conn.connection.driver_connection, None, time.monotonic() + seconds)
    try:
        yield
    finally:
        if watchdog.disarm(alarm) != watchdog.IDLE:
            conn.invalidate()


def _advisory_holder(conn: Connection) -> str | None:
    row = conn.execute(
        text(
            "SELECT a.application_name, a.pid, a.client_addr, a.xact_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": ADVISORY_LOCK_KEY >> 32, "lo": ADVISORY_LOCK_KEY & 0xFFFFFFFF},
    ).first()
    conn.rollback()
    if row is None:
        return None
    name, pid, address, since = row
    return f"'{name}', backend pid {pid} from {address or 'a local socket'}, since {since}"


def mysql_lock_name(conn: Connection) -> str:
    """``GET_LOCK`` names are server-wide: ours names the database (at most 64
    characters), so upgrades of two databases on one server never wait on each other."""
    database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    conn.rollback()
    return f"{LOCK_NAME}.{database}"[:64]


@contextlib.contextmanager
def _get_lock(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """MySQL/MariaDB: ``GET_LOCK`` on the migration's connection."""
    wait = max(1, int(timeouts.migration_lock_wait))
    name = mysql_lock_name(conn)
    got = conn.execute(text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": wait}).scalar()
    conn.commit()
    if got != 1:
        raise busy_error(wait, _get_lock_holder(conn, name))
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        conn.commit()


def _get_lock_holder(conn: Connection, name: str) -> str | None:
    row = conn.execute(
        text(
            "SELECT ID, USER, HOST, TIME FROM information_schema.PROCESSLIST "
            "WHERE ID = IS_USED_LOCK(:n)"
        ),
        {"n": name},
    ).first()
    conn.rollback()
    if row is None:
        return None
    return f"connection {row[0]} of {row[1]}@{row[2]}, for {row[3]} s"


def _lock_path(conn: Connection) -> Path | None:
    path = sqlite_file_path(conn.engine.url)
    return None if path is None else Path(f"{path}.lock")


@contextlib.contextmanager
def _flock(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """SQLite file, POSIX: ``flock`` on ``<file>.lock``, which names its holder while held
    and is empty otherwise (it is kept: see docs/cli.md)."""
    path = _lock_path(conn)
    if path is None:  # an in-memory database has one connection: nothing to serialise
        yield
        return
    wait = timeouts.migration_lock_wait
    deadline = time.monotonic() + wait
    with open(path, "a+b") as lock_file:
        for attempt in range(1_000_000):
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy_error(wait, path.read_text(errors="replace") or None) from None
                time.sleep(random.uniform(0, min(POLL_CAP_S, 0.01 * 2**attempt)))
        lock_file.truncate(0)
        lock_file.write(owner_name().encode())
        lock_file.flush()
        try:
            yield
        finally:
            lock_file.truncate(0)
            lock_file.flush()
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextlib.contextmanager
def _filelock(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """SQLite file where ``fcntl`` is missing (Windows, untested there): the filelock
    package on ``<file>.lock``; the holder is not recorded."""
    path = _lock_path(conn)
    if path is None:
        yield
        return
    try:
        import filelock
    except ModuleNotFoundError as exc:
        raise StoreError(
            "serialising SQLite upgraders on this platform needs the filelock package: "
            "pip install filelock"
        ) from exc
    wait = timeouts.migration_lock_wait
    lock = filelock.FileLock(str(path), timeout=wait)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise busy_error(wait, None) from exc
    try:
        yield
    finally:
        lock.release()


LOCKS: dict[str, Lock] = {
    "advisory": _advisory,
    "get_lock": _get_lock,
    "lease": lease,
    "flock": _flock,
    "filelock": _filelock,
}
