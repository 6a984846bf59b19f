"""Which schema version a database is at, without importing Alembic.

A store reads this on every open; running the chain (``migrations.py``)
imports Alembic only when a migration is needed.

Our revision is recorded in our own version table, ``uniqc_store_alembic_version``
(``UNIQC_STORE_VERSION_TABLE`` overrides the name), so an application's own Alembic
chain keeps ``alembic_version`` to itself in a shared database. Earlier versions
of this package wrote our row into ``alembic_version``: such a row (``0001`` ..
``0005``) still counts, and the next ``upgrade`` moves it into our table.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from sqlalchemy import URL, Connection, inspect, text

from .engine import URL_ENV_VAR, holds_secret, parse_url
from .errors import SchemaTooNewError
from .records import CURRENT_SCHEMA_VERSION

VERSION_TABLE_ENV = "UNIQC_STORE_VERSION_TABLE"
DEFAULT_VERSION_TABLE = "uniqc_store_alembic_version"
#: Alembic's default table, where earlier versions of this package kept our revision.
LEGACY_VERSION_TABLE = "alembic_version"
#: Revision ids of our chain (the id is the schema version).
OUR_REVISIONS = frozenset(f"{v:04d}" for v in range(1, CURRENT_SCHEMA_VERSION + 1))


def version_table() -> str:
    """The table our chain records its revision in (``$UNIQC_STORE_VERSION_TABLE``)."""
    name = os.environ.get(VERSION_TABLE_ENV) or DEFAULT_VERSION_TABLE
    if not name.replace("_", "").isalnum():
        raise ValueError(f"{VERSION_TABLE_ENV} must be a plain table name, not {name!r}")
    return name


def revision_id(version: int) -> str:
    """The revision id of schema version ``version`` (``0`` is base)."""
    return f"{version:04d}"


def version_of(revision: str | None) -> int:
    """The schema version a revision id stands for; unknown ids are too new."""
    if revision is None:
        return 0
    if revision.isdigit():
        return int(revision)
    raise SchemaTooNewError(
        f"the database is at revision {revision!r}, which this version of uniqc-store "
        "does not know; upgrade the uniqc-store package"
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


def upgrade_command(url: str | URL) -> str:
    """The shell command that upgrades the database at ``url``, ready to run.

    A URL holding a password is never printed, and a masked one (``***``)
    would not work if pasted: then the command takes the URL from
    ``UNIQC_STORE_URL`` and says so.
    """
    parsed = parse_url(url)
    if holds_secret(parsed):
        return (
            f"{URL_ENV_VAR}=<your url> uniqc-store upgrade  "
            f"(or: alembic -x url=<your url> upgrade head)"
        )
    shown = shlex.quote(parsed.render_as_string(hide_password=False))
    return f"uniqc-store upgrade --url {shown}  (or: alembic -x url={shown} upgrade head)"
