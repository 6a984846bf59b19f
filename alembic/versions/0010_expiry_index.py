"""v10: an index on ``tasks.update_time``, so ``archive_expired`` finds what expired
by a range read instead of walking the whole live table.

Schema, every engine: ``tasks_update_time_idx`` on ``tasks (update_time, task_id)``.
``archive_expired`` reads the live tasks whose ``update_time`` sorts before the day
after its cut-off (``archive.EXPIRY_CANDIDATES``): a range of this index, as long as
what expired (plus at most two days of rows whose stamp is not in the store's own
form), where before it read every live row, 1,000 at a time in id order, and
moved each page's few expired tasks in a transaction of their own. ``task_id`` is
the index's second column so that on SQLite and PostgreSQL the read of ids and stamps
is answered from the index alone (InnoDB appends the primary key to every index
anyway). On MySQL/MariaDB ``update_time`` is ``TEXT``, which an index holds only by
a prefix: the first 64 characters (the store writes 32). No row changes; building the
index is one sort of the table's stamps (at 1M tasks on SQLite ~3 s).

Only ``tasks``: the archive's retention (``purge_archived``) cuts on ``archived_at``
and is not what this revision is about.

SQLite: ``PRAGMA user_version`` becomes 10 (every revision id is its schema version);
the reference store opens the file as it is (an extra index changes none of its
statements). Downgrade drops the index; no row changes.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "tasks_update_time_idx"
#: The characters of ``update_time`` (``TEXT`` there) a MySQL/MariaDB index holds.
MYSQL_PREFIX = 64


def upgrade() -> None:
    op.create_index(
        INDEX, "tasks", ["update_time", "task_id"], mysql_length={"update_time": MYSQL_PREFIX}
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="tasks")
