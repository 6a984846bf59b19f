"""The migration lock of MariaDB Galera (``wsrep_on``): a lease row in
``uniqc_store_migration_lock``, which works wherever committed rows are shared.

The lease table is created outside the Alembic chain, on first use: it must
exist before the chain's first revision runs on an empty database, and after a
downgrade to base, and it is no part of the task store's schema (SQLite never
has it, and ``PRAGMA user_version`` and ``CURRENT_SCHEMA_VERSION`` stay as they
are). A lease expires at its holder's migration deadline (``migration_seconds``,
past which the holder's run has been ended by the watchdog), so an upgrader that
died leaves the lock to the next one then; delete the row to free it earlier.
Times are the server's clock, so deployers on machines with different clocks agree.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, inspect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.schema import CreateTable

from uniqc_store.db.dialects import family_of
from uniqc_store.db.executor import MAX_ATTEMPTS, backoff_pause
from uniqc_store.errors import StoreError
from uniqc_store.migrations.lockwait import LOCK_NAME, POLL_CAP_S, busy_error, owner_name
from uniqc_store.schema.versions import MIGRATION_LOCK_TABLE
from uniqc_store.timeouts import Timeouts

log = logging.getLogger(__name__)

lease_table = Table(
    MIGRATION_LOCK_TABLE,
    MetaData(),
    Column("lock_name", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("acquired_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    mysql_charset="utf8mb4",
    mariadb_charset="utf8mb4",
)


def server_now_ms(conn: Connection) -> int:
    """The database server's clock in milliseconds since the epoch."""
    query = {
        "postgresql": "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        "sqlite": "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }.get(conn.dialect.name, "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
    now = int(conn.exec_driver_sql(query).scalar_one())
    conn.rollback()
    return now


def _is_conflict(conn: Connection, exc: DBAPIError) -> bool:
    """A lost race for the lease row: a duplicate key, or a transaction the server
    aborted (on Galera a duplicate key inserted on two nodes at once is a deadlock, 1213)."""
    return isinstance(exc, IntegrityError) or family_of(conn.dialect.name).asks_for_retry(exc.orig)


def create_lease_table(conn: Connection) -> None:
    """The lease table, if missing (deployers creating it at once is fine).

    Galera runs DDL in total order on every node, outside any transaction, so a
    deployer on another node may create the table between our look-up and our CREATE
    (1050; hence ``IF NOT EXISTS`` too), or while we look (1684), or abort us (1213):
    each is a lost race (``Family.ddl_race``, ``asks_for_retry``), and the next look
    finds the table. The look-up first keeps a present table from costing a cluster-wide
    DDL per deployer. Attempts and back-off are the executor's policy.
    """
    family = family_of(conn.dialect.name)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            if not inspect(conn).has_table(MIGRATION_LOCK_TABLE):
                conn.execute(CreateTable(lease_table, if_not_exists=True))
            conn.commit()
            return
        except DBAPIError as exc:
            conn.rollback()
            if not (family.lost_ddl_race(exc.orig) or family.asks_for_retry(exc.orig)):
                raise
            if attempt == MAX_ATTEMPTS:
                raise StoreError(f"cannot create the migration lock table: {exc.orig}") from exc
            log.info("the migration lock table was being created elsewhere (%s)", exc.orig)
            time.sleep(backoff_pause(attempt))


@contextlib.contextmanager
def lease(conn: Connection, timeouts: Timeouts) -> Iterator[None]:
    """A committed lease row: works wherever committed rows are shared (Galera, any pooler)."""
    create_lease_table(conn)
    me, wait = owner_name(), timeouts.migration_lock_wait
    deadline = time.monotonic() + wait
    for attempt in range(1_000_000):
        try:
            holder = _take_lease(conn, me, int(timeouts.migration_seconds * 1000))
        except DBAPIError as exc:  # a certification conflict with another node: try again
            conn.rollback()
            if not _is_conflict(conn, exc):
                raise
            holder = ""
        if holder is None:
            break
        if time.monotonic() >= deadline:
            raise busy_error(wait, holder or None)
        time.sleep(random.uniform(0, min(POLL_CAP_S, 0.01 * 2**attempt)))
    try:
        yield
    finally:
        conn.rollback()
        _release_lease(conn, me)


def _take_lease(conn: Connection, me: str, lease_ms: int) -> str | None:
    """Take the lease (None), or describe its holder (``""`` if it just went)."""
    now = server_now_ms(conn)
    try:
        conn.execute(
            lease_table.insert().values(
                lock_name=LOCK_NAME, owner=me, acquired_ms=now, expires_ms=now + lease_ms
            )
        )
        conn.commit()
        return None
    except DBAPIError as exc:
        conn.rollback()
        if not _is_conflict(conn, exc):
            raise
    c = lease_table.c
    row = conn.execute(lease_table.select().where(c.lock_name == LOCK_NAME)).first()
    conn.rollback()
    if row is None:
        return ""
    if row.expires_ms <= now and _take_over(conn, row, me, now, lease_ms):
        return None
    return f"{row.owner}, lease taken {(now - row.acquired_ms) / 1000:.0f} s ago"


def _take_over(conn: Connection, row: Any, me: str, now: int, lease_ms: int) -> bool:
    """Take an expired lease from its holder, if nobody else did first."""
    c = lease_table.c
    try:
        result = conn.execute(
            lease_table.update()
            .where(c.lock_name == LOCK_NAME, c.owner == row.owner, c.expires_ms == row.expires_ms)
            .values(owner=me, acquired_ms=now, expires_ms=now + lease_ms)
        )
        conn.commit()
    except DBAPIError as exc:
        conn.rollback()
        if _is_conflict(conn, exc):
            return False
        raise
    if result.rowcount == 1:
        log.warning("took over the migration lease of %s: its deadline had passed", row.owner)
        return True
    return False


def _release_lease(conn: Connection, me: str) -> None:
    c = lease_table.c
    for attempt in range(8):  # a certification conflict on Galera is worth another try
        try:
            conn.execute(lease_table.delete().where(c.lock_name == LOCK_NAME, c.owner == me))
            conn.commit()
            return
        except DBAPIError as exc:
            conn.rollback()
            if not _is_conflict(conn, exc) or attempt == 7:
                raise
