"""The schema as Core tables: the reference's v5 tables, spelled out once.

Every table, column, default, key and index name here is the reference
store's, in the reference's column order, but for revision 0007's indexes
(filtered newest-first pages and counts, issue 28: they replace the reference's
one-column ``status`` and ``backend`` indexes, which each starts with) and,
apart from ``metadata``, its ``task_counts`` (revisions 0007 and 0009). Engine
differences live in the column types (MySQL/MariaDB's and PostgreSQL's
collations) and the MySQL/MariaDB table options (``types.py``), not in
per-engine SQL. The repository runs on these tables alone; the ORM classes
(``models.py``) map over them and load ``sqlalchemy.orm`` only where the ORM
is used, so ``import uniqc_store`` does not pay for it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, Table, text

from uniqc_store.schema.types import (
    MYSQL_INDEX_LENGTHS,
    MYSQL_OPTIONS,
    SQLITE_NULLABLE_PK,
    ExactKeyText,
    ExactText,
    JSONText,
    PayloadText,
)

metadata = MetaData(
    naming_convention={
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _task_columns() -> list[Column[Any]]:
    """The columns ``tasks`` and ``archived_tasks`` share, in the reference's order."""
    return [
        Column("task_id", ExactKeyText, primary_key=True, info={SQLITE_NULLABLE_PK: True}),
        Column("backend", ExactKeyText, nullable=False),
        Column("status", ExactKeyText, nullable=False),
        Column("shots", Integer, nullable=False, server_default=text("0")),
        Column("submit_time", ExactKeyText, nullable=False),
        Column("update_time", ExactText, nullable=False),
        Column("result_json", JSONText()),
        Column("metadata_json", JSONText(empty_object=True), nullable=False, server_default="{}"),
    ]


def _shard_columns(parent: Column[str]) -> list[Column[Any]]:
    """The columns ``task_shards`` and ``archived_task_shards`` share, ``parent`` (the
    task id, with or without its foreign key) first."""
    return [
        parent,
        Column("shard_index", Integer, primary_key=True),
        Column("platform_task_id", ExactKeyText, nullable=False),
        Column("backend", ExactKeyText, nullable=False),
        Column("circuit_count", Integer, nullable=False, server_default=text("1")),
        Column("sub_index_offset", Integer, nullable=False, server_default=text("0")),
        Column("status", ExactKeyText, nullable=False),
        Column("result_json", JSONText()),
        Column("error_message", PayloadText),
        Column("submit_time", ExactText, nullable=False),
        Column("update_time", ExactText, nullable=False),
    ]


def _table(name: str, *elements: Any) -> Table:
    """One of the store's tables: in ``metadata``, flagged for the MySQL table options."""
    return Table(name, metadata, *elements, info={MYSQL_OPTIONS: True})


tasks = _table(
    "tasks",
    *_task_columns(),
    Column("error_message", PayloadText),  # v3 added it last
    Index("tasks_submit_time_idx", "submit_time"),
    Index("tasks_status_time_idx", "status", "submit_time"),
    Index("tasks_status_backend_time_idx", "status", "backend", "submit_time"),
    Index("tasks_backend_time_idx", "backend", "submit_time"),
    # 0010: archive_expired's range read (MySQL indexes TEXT by a prefix only)
    Index(
        "tasks_update_time_idx",
        "update_time",
        "task_id",
        info={MYSQL_INDEX_LENGTHS: {"update_time": 64}},
    ),
)

archived_tasks = _table(
    "archived_tasks",
    *_task_columns(),
    Column("archived_at", ExactText, nullable=False),
    Column("error_message", PayloadText),  # v3 added it after archived_at
    Index("archived_submit_time_idx", "submit_time"),
    Index("archived_status_time_idx", "status", "submit_time"),
    Index("archived_status_backend_time_idx", "status", "backend", "submit_time"),
    Index("archived_backend_time_idx", "backend", "submit_time"),
)

task_shards = _table(
    "task_shards",
    *_shard_columns(
        Column(
            "uniqc_task_id",
            ExactKeyText,
            ForeignKey("tasks.task_id", ondelete="CASCADE"),
            primary_key=True,
        )
    ),
    Index("task_shards_platform_idx", "platform_task_id"),
    Index("task_shards_status_idx", "status"),
)

archived_task_shards = _table(
    "archived_task_shards",
    *_shard_columns(Column("uniqc_task_id", ExactKeyText, primary_key=True)),
    Column("archived_at", ExactText, nullable=False),
    Index("archived_task_shards_platform_idx", "platform_task_id"),
)

#: Tasks per (table, status, backend), kept by triggers on SQLite files from revision
#: 0007 and on the servers from 0009 (``archived`` is 0 for ``tasks``, 1 for
#: ``archived_tasks``; the servers' table has one more key column, ``shard``, and a
#: group is the sum of its rows, which is all the store reads). Not in ``metadata``:
#: ``create_all`` makes neither it nor its triggers on any engine (they are the
#: revisions' work), and a database without them is counted from the rows
#: (``repository/counts.py``).
counters_metadata = MetaData()
task_counts = Table(
    "task_counts",
    counters_metadata,
    Column("archived", Integer, primary_key=True),
    Column("status", ExactKeyText, primary_key=True),
    Column("backend", ExactKeyText, primary_key=True),
    Column("n", Integer, nullable=False),
)
