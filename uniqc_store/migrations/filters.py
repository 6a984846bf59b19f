"""Filters for the Alembic ``env.py`` of an application that shares its database with us.

The application's ``alembic revision --autogenerate`` and ``alembic check`` compare
its models with every table in the database; ours are not in its models, so it
proposes ``remove_table`` for our four tables and for our version table (Alembic
skips only the version table of the chain it runs). Pass one of these to the
application's ``context.configure()``::


    context.configure(connection=connection, target_metadata=Base.metadata,
                      include_name=include_name)

``include_name`` skips our tables before they are even reflected (cheaper);
``include_object`` is the same rule for an ``env.py`` that already uses that
hook. An application with its own filter calls ours from it. The names come from
the one place that defines them: our tables' metadata and ``version_table()``
(``UNIQC_STORE_VERSION_TABLE``, read at each call, as the migrations read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uniqc_store.schema.tables import metadata, task_counts
from uniqc_store.schema.versions import MIGRATION_LOCK_TABLE, version_table

__all__ = ["include_name", "include_object", "our_tables"]


def our_tables() -> frozenset[str]:
    """The tables uniqc-store owns in a shared database: its four, its version table,
    the migration lock's lease table (Galera) and ``task_counts`` (0007 on SQLite,
    0009 on the servers)."""
    return frozenset(metadata.tables) | {version_table(), MIGRATION_LOCK_TABLE, task_counts.name}


def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic's ``include_name`` hook: False for our tables, True for everything else."""
    return not (type_ == "table" and name in our_tables())


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` hook: False for our tables (their columns, indexes
    and keys go with them), True for everything else."""
    if type_ == "table":
        return name not in our_tables()
    table = getattr(obj, "table", None)  # a column, index or constraint of a table
    return getattr(table, "name", None) not in our_tables()
