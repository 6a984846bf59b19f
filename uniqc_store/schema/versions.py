"""Schema version facts: our revision ids and the table they are recorded in.

Our revision is recorded in our own version table, ``uniqc_store_alembic_version``
(``UNIQC_STORE_VERSION_TABLE`` overrides the name), so an application's own Alembic
chain keeps ``alembic_version`` to itself in a shared database. Earlier versions
of this package wrote our row into ``alembic_version``: such a row (``0001`` ..
``0005``) still counts, and the next ``upgrade`` moves it into our table.
"""

from __future__ import annotations

import os

from uniqc_store.errors import SchemaTooNewError
from uniqc_store.records import CURRENT_SCHEMA_VERSION

VERSION_TABLE_ENV = "UNIQC_STORE_VERSION_TABLE"
DEFAULT_VERSION_TABLE = "uniqc_store_alembic_version"
#: Alembic's default table, where earlier versions of this package kept our revision.
LEGACY_VERSION_TABLE = "alembic_version"
#: The migration lease of Galera (``migrations/lease.py``): made outside the chain, on
#: first use, so it is no part of any schema version.
MIGRATION_LOCK_TABLE = "uniqc_store_migration_lock"
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
