"""Bounds on migration statements, so an upgrade never stalls a live database.

A DDL statement that waits for a table lock held by a long transaction of live
traffic queues every later reader and writer of that table behind it: the
database looks down until the long transaction ends. So each migration
statement waits at most ``Timeouts.ddl_lock_seconds`` (5 s) for a lock and then
gives up, and the upgrade ends in ``DatabaseBusyError`` saying to run it again:

- PostgreSQL: ``SET LOCAL lock_timeout`` and ``SET LOCAL statement_timeout``
  (``ddl_statement_seconds``, 600 s) at the start of every transaction of the
  migration connection, inside the transaction, so a pooler in transaction mode
  (PgBouncer) keeps them with it and no other client ever sees them. The failed
  revision is rolled back; the revisions before it stay committed.
- MySQL/MariaDB: the session's ``lock_wait_timeout`` (metadata locks, what DDL
  waits for) and ``innodb_lock_wait_timeout`` (row locks of data steps) on the
  migration's own connection, restored afterwards; MySQL has no statement bound
  for DDL. DDL commits as it goes (see the README), and every DDL step is
  idempotent, so running ``upgrade`` again completes the revision.
- SQLite: the busy timeout already bounds the wait for the write lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError

from uniqc_store.db.dialects import is_mysql
from uniqc_store.errors import DatabaseBusyError
from uniqc_store.timeouts import Timeouts

#: What a lock or statement bound that ran out raises, per engine.
_PG_TIMED_OUT = {"55P03": "lock", "57014": "statement"}  # lock_not_available, query_canceled
_MYSQL_TIMED_OUT = {1205: "lock"}


@contextlib.contextmanager
def ddl_bounds(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """Bound every statement run on ``conn`` in the block (see the module docstring), and
    turn a bound that ran out into ``DatabaseBusyError``."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        bounded: contextlib.AbstractContextManager[None] = _postgresql_bounds(conn, timeouts)
    elif is_mysql(dialect):
        bounded = _mysql_bounds(conn, timeouts)
    else:
        bounded = contextlib.nullcontext()
    try:
        with bounded:
            yield
    except DBAPIError as exc:
        kind = _timed_out(exc, dialect)
        if kind is None:
            raise
        raise _ddl_busy(kind, timeouts, exc) from exc


def _timed_out(exc: DBAPIError, dialect: str) -> str | None:
    """``"lock"`` or ``"statement"`` if ``exc`` is a bound of ours running out."""
    if dialect == "postgresql":
        return _PG_TIMED_OUT.get(getattr(exc.orig, "sqlstate", None) or "")
    if is_mysql(dialect):
        args = getattr(exc.orig, "args", ())
        return _MYSQL_TIMED_OUT.get(args[0] if args else None)  # type: ignore[arg-type]
    return None


def _ddl_busy(kind: str, timeouts: Timeouts, exc: DBAPIError) -> DatabaseBusyError:
    first_line = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
    if kind == "lock":
        what = (
            f"a migration statement waited more than {timeouts.ddl_lock_seconds:g} s for a "
            "lock that other connections hold (a long transaction?), and gave up rather "
            "than queue the database's traffic behind it"
        )
        fix = "Timeouts.ddl_lock_seconds"
    else:
        what = (
            f"a migration statement ran longer than {timeouts.ddl_statement_ms / 1000:g} s "
            "and was cancelled"
        )
        fix = "Timeouts.ddl_statement_seconds"
    return DatabaseBusyError(
        f"{what} ({first_line}); the revision was not completed: run the upgrade again "
        f"at a quieter moment, or raise {fix} (UNIQC_STORE_TIMEOUTS)"
    )


@contextlib.contextmanager
def _postgresql_bounds(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    settings = (
        "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"
    )
    values = (f"{int(timeouts.ddl_lock_seconds * 1000)}ms", f"{timeouts.ddl_statement_ms}ms")

    def set_local(connection: Connection) -> None:
        # On the driver's cursor: a statement through ``connection`` here would begin
        # the transaction that is beginning. psycopg opens it with this statement.
        dbapi: Any = connection.connection.dbapi_connection
        # never prepared (PgBouncer); SQLAlchemy's adapter of psycopg's async
        # connection takes no ``prepare`` and leaves preparing to the connection
        never_prepare = {} if connection.dialect.is_async else {"prepare": False}
        with dbapi.cursor() as cursor:
            cursor.execute(settings, values, **never_prepare)

    if conn.in_transaction():  # the transaction already open gets them too
        set_local(conn)
    event.listen(conn, "begin", set_local)
    try:
        yield
    finally:
        event.remove(conn, "begin", set_local)


@contextlib.contextmanager
def _mysql_bounds(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    wait = max(1, int(timeouts.ddl_lock_seconds))
    before = conn.exec_driver_sql(
        "SELECT @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout"
    ).one()
    conn.exec_driver_sql(
        f"SET SESSION lock_wait_timeout = {wait}, SESSION innodb_lock_wait_timeout = {wait}"
    )
    conn.commit()
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        if not conn.invalidated:
            conn.exec_driver_sql(
                f"SET SESSION lock_wait_timeout = {int(before[0])}, "
                f"SESSION innodb_lock_wait_timeout = {int(before[1])}"
            )
            conn.commit()
