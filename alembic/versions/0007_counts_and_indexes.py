"""v7: lists and counts that do not scan (issue 28).

Schema, every engine: three indexes on ``tasks`` and the same three on
``archived_tasks``, so a filtered newest-first page and a filtered count read
only the rows they return or count:

- ``(status, submit_time)``: ``list(status=...)``'s first page;
- ``(status, backend, submit_time)``: ``list(status=..., backend=...)`` and
  ``count(status=..., backend=...)`` (a range of the index, no table rows);
- ``(backend, submit_time)``: ``list(backend=...)``, ``count(backend=...)``.

The newest-first order's tie-breaker (SQLite's rowid, the servers' task id)
is in each index already: SQLite appends the rowid to every index and InnoDB
the primary key; PostgreSQL sorts only the rows that tie on ``submit_time``.
Three key columns is also the most MySQL/MariaDB take (3 x 255 characters x 4
bytes = 3,060 of InnoDB's 3,072). The reference's one-column ``status`` and
``backend`` indexes of both tables are dropped: each is the start of a new one,
which answers every query they did, and each index costs every save (the
reference creates them only in its migrations below v5, so it never misses them).

SQLite only: a table ``task_counts`` (``archived`` 0/1, ``status``,
``backend``, ``n``) kept by six triggers (insert, delete, and an update that
changes ``status`` or ``backend``, on each task table) and filled from the rows
when this revision runs, in the same transaction. Triggers live in the file,
so every writer keeps the counts right, the reference store included (its
saves and deletes fire them; ``cursor.rowcount`` still counts only its own
rows). The servers get no counters: one row per (status, backend) would be a
hot row every save of that group waits on; their counts read the indexes above.

``PRAGMA user_version`` becomes 7 (every revision id is its schema version);
the reference store migrates only below its own 5 and opens such files as they
are: the indexes and triggers are invisible to it.

Downgrade: drops the triggers, ``task_counts`` and the six indexes and makes the
reference's four again; no row changes.
MySQL/MariaDB commit each DDL statement as it runs: a run stopped half-way is
safe to repeat (an index already made is not made again, one already dropped
is not dropped again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The new indexes: (table, name, columns).
INDEXES = (
    ("tasks", "tasks_status_time_idx", ("status", "submit_time")),
    ("tasks", "tasks_status_backend_time_idx", ("status", "backend", "submit_time")),
    ("tasks", "tasks_backend_time_idx", ("backend", "submit_time")),
    ("archived_tasks", "archived_status_time_idx", ("status", "submit_time")),
    ("archived_tasks", "archived_status_backend_time_idx", ("status", "backend", "submit_time")),
    ("archived_tasks", "archived_backend_time_idx", ("backend", "submit_time")),
)
#: The reference's indexes each new one starts with: (table, name, column).
REPLACED = (
    ("tasks", "tasks_backend_idx", "backend"),
    ("tasks", "tasks_status_idx", "status"),
    ("archived_tasks", "archived_backend_idx", "backend"),
    ("archived_tasks", "archived_status_idx", "status"),
)
COUNTS_TABLE = "task_counts"
#: Each task table and its ``archived`` value in ``task_counts``.
COUNTED = (("tasks", 0), ("archived_tasks", 1))


def _existing_indexes(table: str) -> set[str]:
    if context.is_offline_mode():  # --sql: nothing to look at; a fresh run
        return set()
    return {str(i["name"]) for i in sa.inspect(op.get_bind()).get_indexes(table)}


def _add(archived: int, row: str) -> str:
    return (
        f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, n)"
        f" VALUES ({archived}, {row}.status, {row}.backend, 1)"
        " ON CONFLICT (archived, status, backend) DO UPDATE SET n = n + 1;"
    )


def _remove(archived: int, row: str) -> str:
    return (
        f"UPDATE {COUNTS_TABLE} SET n = n - 1 WHERE archived = {archived}"
        f" AND status = {row}.status AND backend = {row}.backend;"
    )


def _create_counters() -> None:
    """``task_counts``, filled from the rows, and the triggers that keep it (SQLite)."""
    op.execute(
        f"CREATE TABLE {COUNTS_TABLE} ("
        "archived INTEGER NOT NULL, status TEXT NOT NULL, backend TEXT NOT NULL,"
        " n INTEGER NOT NULL, PRIMARY KEY (archived, status, backend)) WITHOUT ROWID"
    )
    for table, archived in COUNTED:
        op.execute(
            f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, n)"
            f" SELECT {archived}, status, backend, count(*) FROM {table} GROUP BY status, backend"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table}"
            f" BEGIN {_add(archived, 'NEW')} END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table}"
            f" BEGIN {_remove(archived, 'OLD')} END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF status, backend ON {table}"
            " WHEN OLD.status IS NOT NEW.status OR OLD.backend IS NOT NEW.backend"
            f" BEGIN {_remove(archived, 'OLD')} {_add(archived, 'NEW')} END"
        )


def _drop_counters() -> None:
    for table, _archived in COUNTED:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{event}")
    op.execute(f"DROP TABLE IF EXISTS {COUNTS_TABLE}")


def upgrade() -> None:
    for table, name, columns in INDEXES:
        if name not in _existing_indexes(table):
            op.create_index(name, table, list(columns))
    for table, name, _column in REPLACED:
        if context.is_offline_mode() or name in _existing_indexes(table):
            op.drop_index(name, table_name=table)
    if op.get_context().dialect.name == "sqlite":
        _create_counters()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _drop_counters()
    for table, name, column in REPLACED:
        if name not in _existing_indexes(table):
            op.create_index(name, table, [column])
    for table, name, _columns in reversed(INDEXES):
        if context.is_offline_mode() or name in _existing_indexes(table):
            op.drop_index(name, table_name=table)
