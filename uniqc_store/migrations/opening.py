"""What a store checks when it opens a database, before its first call.

A SQLite file must be ours or new (``application_id`` UNIC or 0: a file another
application stamped is left as it is); the schema must be at head, or the
database is upgraded (SQLite always, a server only with ``auto_migrate=True``,
since a server is shared and its upgrade is a deployment step); and our revision
row must sit in our own version table (earlier versions kept it in
``alembic_version``; an upgrade moves it). Everything here reads: Alembic is
imported only when the store's ``upgrade`` runs the chain.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import URL, Connection
from sqlalchemy.exc import OperationalError

from uniqc_store.db.executor import Executor
from uniqc_store.db.urls import redact, redact_text, upgrade_command
from uniqc_store.errors import (
    DatabaseUnavailableError,
    ForeignDatabaseError,
    SchemaOutOfDateError,
    StoreError,
)
from uniqc_store.migrations.versions import database_version, legacy_revisions
from uniqc_store.records import APPLICATION_ID, CURRENT_SCHEMA_VERSION


def open_schema(
    executor: Executor, url: URL, auto_migrate: bool | None, upgrade: Callable[[], None]
) -> None:
    """Check the database at ``url`` and bring it to head if the rules allow.

    ``auto_migrate`` None means: upgrade SQLite, refuse a server behind head with
    ``SchemaOutOfDateError`` naming the command to run.
    """
    dialect = executor.engine.dialect.name
    try:
        version, moved = executor.read(lambda conn: _opened_version(conn, url))
    except StoreError as exc:  # translated by the executor; a file it cannot open is ours
        cause = exc.__cause__
        if not isinstance(cause, OperationalError):
            raise
        raise DatabaseUnavailableError(
            f"cannot open the task database at {redact(url)}: {redact_text(str(cause.orig))}"
        ) from cause
    if version != CURRENT_SCHEMA_VERSION or moved:
        if not (dialect == "sqlite" if auto_migrate is None else auto_migrate):
            raise SchemaOutOfDateError(
                f"the task database at {redact(url)} is at schema version {version}, "
                f"this uniqc-store needs {CURRENT_SCHEMA_VERSION}; run: {upgrade_command(url)}"
            )
        upgrade()
    executor.ensure_statistics()


def _opened_version(conn: Connection, url: URL) -> tuple[int, bool]:
    """The version, and whether our row still sits in ``alembic_version``."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        _check_application_id(conn, url)
    moved = sqlite and bool(legacy_revisions(conn))
    return database_version(conn), moved


def _check_application_id(conn: Connection, url: URL) -> None:
    found = int(conn.exec_driver_sql("PRAGMA application_id").scalar_one())
    if found not in (0, APPLICATION_ID):
        raise ForeignDatabaseError(
            f"the SQLite database at {redact(url)} has application_id 0x{found:08x}, "
            "not UNIC: it belongs to another application and was left untouched"
        )
