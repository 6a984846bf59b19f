"""Which schema version a database is at, without importing Alembic.

A store reads this on every open; running the chain (``runner.py``) imports
Alembic only when a migration is needed. The names it reads are in
``uniqc_store.schema.versions``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, inspect, text

from uniqc_store.errors import SchemaTooNewError
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.schema.versions import (
    LEGACY_VERSION_TABLE,
    OUR_REVISIONS,
    version_of,
    version_table,
)


def sqlite_user_version(conn: Connection) -> int:
    """``PRAGMA user_version`` of the connection's main database."""
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def _rows(conn: Connection, table: str) -> list[str]:
    return [str(v) for v in conn.execute(text(f"SELECT version_num FROM {table}")).scalars()]


def legacy_revisions(conn: Connection) -> list[str]:
    """Our revisions still recorded in ``alembic_version`` (other chains' rows are not ours)."""
    if version_table() == LEGACY_VERSION_TABLE:
        return []
    if not inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return []
    return [r for r in _rows(conn, LEGACY_VERSION_TABLE) if r in OUR_REVISIONS]


def recorded_revisions(conn: Connection) -> tuple[bool, Sequence[str]]:
    """Whether any version table of ours exists, and the revisions recorded there."""
    legacy = legacy_revisions(conn)
    table = version_table()
    if inspect(conn).has_table(table):
        return True, [*_rows(conn, table), *legacy]
    return bool(legacy), legacy


def database_version(conn: Connection) -> int:
    """The schema version the database is at (0 for an empty database).

    Reads our version table (and our rows left in ``alembic_version``) and
    otherwise, on SQLite, the reference store's ``user_version``. Raises
    SchemaTooNewError for a version this package does not know; nothing is written.
    """
    has_table, heads = recorded_revisions(conn)
    if has_table:
        version = max((version_of(h) for h in heads), default=0)
    elif conn.dialect.name == "sqlite":
        version = sqlite_user_version(conn)
    else:
        version = 0
    if version > CURRENT_SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database is at schema version {version} but this uniqc-store knows "
            f"versions up to {CURRENT_SCHEMA_VERSION}; upgrade the uniqc-store package "
            "(nothing was written)"
        )
    return version
