"""Running the Alembic chain from code, and what surrounds it.

The chain's revision ids are ``0001``, ``0002``, ...: the id *is* the schema
version on every engine, and SQLite's ``PRAGMA user_version`` holds it, also
after a revision that changes no table on SQLite (0006 changes MySQL only;
its SQLite files still say 6). The reference store migrates only below its
own version 5, so it opens such files as they are. This
module adopts files made by the reference store (``user_version`` k, no
``alembic_version`` table), refuses databases newer than the package,
stamps the SQLite header after every step, serialises concurrent
upgraders (``locks.py``) and bounds every migration statement (``bounds.py``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate.compare import comparators
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import DispatchPriority, PriorityDispatchResult
from sqlalchemy import URL, Column, Connection, Engine, inspect, text

from uniqc_store.db import door, watchdog
from uniqc_store.db.sqlite import SQLITE_BEGIN
from uniqc_store.db.urls import parse_url, upgrade_command
from uniqc_store.migrations.bounds import ddl_bounds
from uniqc_store.migrations.locks import migration_lock
from uniqc_store.migrations.versions import database_version, legacy_revisions, sqlite_user_version
from uniqc_store.records import APPLICATION_ID
from uniqc_store.schema.versions import LEGACY_VERSION_TABLE, revision_id, version_of, version_table
from uniqc_store.timeouts import (
    DEFAULT_TIMEOUTS,
    TIMEOUTS_ENV_VAR,
    Timeouts,
    json_object_from_environment,
)

__all__ = [
    "database_version",
    "ddl_bounds",
    "downgrade",
    "make_config",
    "migration_lock",
    "migration_timeouts",
    "prepare_database",
    "revision_id",
    "script_directory",
    "sqlite_user_version",
    "upgrade",
    "upgrade_command",
    "version_of",
    "version_table",
]


def script_location() -> str:
    """The Alembic environment: shipped inside the wheel, or the checkout's ``alembic/``."""
    here = Path(__file__).resolve().parent.parent  # the uniqc_store package
    for candidate in (here / "_alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return str(candidate)
    raise FileNotFoundError("the uniqc_store migrations are missing from this installation")


def make_config(
    url: str | URL | None = None,
    connection: Connection | None = None,
    timeouts: Timeouts | None = None,
) -> Config:
    """An Alembic Config for our chain, on a URL or on a connection we hold; ``timeouts``
    bound the migration lock wait and every statement (else ``UNIQC_STORE_TIMEOUTS``)."""
    config = Config()
    config.set_main_option("script_location", script_location())
    if url is not None:
        config.attributes["url"] = parse_url(url)
    if connection is not None:
        config.attributes["connection"] = connection
    if timeouts is not None:
        config.attributes["timeouts"] = timeouts
    return config


def migration_timeouts(config: Config) -> Timeouts:
    """The bounds of a migration run: the caller's, else ``UNIQC_STORE_TIMEOUTS``
    (what the CLI and ``alembic`` read), else the defaults."""
    given = config.attributes.get("timeouts")
    if isinstance(given, Timeouts):
        return given
    values = json_object_from_environment(TIMEOUTS_ENV_VAR, os.environ.get(TIMEOUTS_ENV_VAR))
    return Timeouts.from_mapping(values) if values else DEFAULT_TIMEOUTS


def script_directory() -> ScriptDirectory:
    """The chain of revisions."""
    return ScriptDirectory.from_config(make_config())


def prepare_database(conn: Connection) -> int:
    """Check the version, move or adopt the version record; return the version.

    Refuses a database newer than the package before anything is written. Our
    revision left in ``alembic_version`` by an earlier version moves into our
    version table (other chains' rows there stay). A SQLite file at
    ``user_version`` k with no version table (made by the reference store) is
    stamped at revision k, so Alembic continues from there. Runs in the
    connection's current transaction; the caller commits.
    """
    version = database_version(conn)
    legacy = legacy_revisions(conn)
    if legacy:
        _stamp(conn, revision_id(version))
        for revision in legacy:
            conn.execute(
                text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = :r"), {"r": revision}
            )
    elif (
        version > 0
        and conn.dialect.name == "sqlite"
        and not inspect(conn).has_table(version_table())
    ):
        _stamp(conn, revision_id(version))
    return version


def _stamp(conn: Connection, revision: str) -> None:
    """Record ``revision`` in our version table (created if missing)."""
    context = MigrationContext.configure(conn, opts={"version_table": version_table()})
    context.stamp(script_directory(), revision)


def stamp_sqlite_header(ctx: MigrationContext, heads: set[str], **_: Any) -> None:
    """``on_version_apply`` hook: mirror the new revision into the SQLite header.

    Runs inside the revision's transaction, so the stamp commits or rolls
    back with the revision's changes.
    """
    if ctx.dialect.name != "sqlite":
        return
    version = max((version_of(h) for h in heads), default=0)
    ctx.execute(text(f"PRAGMA user_version = {int(version)}"))
    ctx.execute(text(f"PRAGMA application_id = {APPLICATION_ID}"))


@comparators.dispatch_for("column", subgroup="nullable", priority=DispatchPriority.FIRST)
def _primary_keys_keep_their_nullability(
    autogen_context: Any,
    alter_column_op: ops.AlterColumnOp,
    schema: str | None,
    table_name: str,
    column_name: str,
    conn_col: Column[Any],
    metadata_col: Column[Any],
) -> PriorityDispatchResult:
    """Autogenerate: no nullability change on key columns.

    Key columns are NOT NULL by definition on servers but nullable in the
    reference's SQLite DDL (``task_id TEXT PRIMARY KEY``); neither is a
    difference worth a migration.
    """
    if metadata_col.primary_key:
        alter_column_op.existing_nullable = conn_col.nullable
        return PriorityDispatchResult.STOP
    return PriorityDispatchResult.CONTINUE


@contextlib.contextmanager
def migration_connection(
    engine: Engine, deadline_seconds: float = DEFAULT_TIMEOUTS.migration_seconds
) -> Iterator[Connection]:
    """A connection to run revisions on, for at most ``deadline_seconds`` on a server
    (the watchdog shuts its socket then: a hung server ends the run).

    On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``, so a
    revision waits for busy writers instead of failing half-way) and has
    foreign keys off, so no rebuild or re-key cascades into child rows; the
    revisions check the keys themselves (``PRAGMA foreign_key_check``).
    """
    with door.exempt("the migration runner"), engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            deadline = time.monotonic() + deadline_seconds
            alarm = watchdog.arm(conn.connection.driver_connection, None, deadline)
            try:
                yield conn
            finally:
                if watchdog.disarm(alarm) != watchdog.IDLE:
                    conn.invalidate()
            return
        raw = conn.connection.dbapi_connection
        assert raw is not None
        enforced = raw.execute("PRAGMA foreign_keys").fetchone()[0]
        raw.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: none is open
        try:
            yield conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        finally:
            if conn.in_transaction():
                conn.rollback()
            raw.execute(f"PRAGMA foreign_keys = {int(enforced)}")


def upgrade(
    connectable: Engine | Connection,
    revision: str = "head",
    *,
    deadline_seconds: float | None = None,
    timeouts: Timeouts | None = None,
) -> None:
    """Upgrade the database to ``revision`` (the newest by default).

    ``timeouts`` bound the wait for another upgrader and each statement (docs/production.md,
    "Migrations on a live database"); ``deadline_seconds`` (default
    ``timeouts.migration_seconds``) the whole run.
    """
    _run(connectable, command.upgrade, revision, deadline_seconds, timeouts)


def downgrade(
    connectable: Engine | Connection,
    revision: str,
    *,
    deadline_seconds: float | None = None,
    timeouts: Timeouts | None = None,
) -> None:
    """Downgrade the database to ``revision`` (``base`` removes every table)."""
    _run(connectable, command.downgrade, revision, deadline_seconds, timeouts)


def _run(
    connectable: Engine | Connection,
    fn: Any,
    revision: str,
    deadline_seconds: float | None,
    timeouts: Timeouts | None,
) -> None:
    if isinstance(connectable, Connection):
        fn(make_config(connection=connectable, timeouts=timeouts), revision)
        return
    if deadline_seconds is None:
        deadline_seconds = (timeouts or DEFAULT_TIMEOUTS).migration_seconds
    with migration_connection(connectable, deadline_seconds) as conn:
        fn(make_config(connection=conn, timeouts=timeouts), revision)
