"""v4: the shard tables that map a uniqc task to its platform jobs.

Schema: creates ``task_shards`` (key ``(uniqc_task_id, shard_index)``,
``uniqc_task_id`` -> ``tasks.task_id`` ON DELETE CASCADE) with
``task_shards_platform_idx`` and ``task_shards_status_idx``, and
``archived_task_shards`` (plus ``archived_at``, no foreign key) with
``archived_task_shards_platform_idx``.
Data: none.
Downgrade: drops both tables (every shard row goes with them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from uniqc_store.column_types import MYSQL_TABLE_ARGS, KeyText, PayloadText

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _shard_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("uniqc_task_id", KeyText, nullable=False),
        sa.Column("shard_index", sa.Integer, nullable=False),
        sa.Column("platform_task_id", KeyText, nullable=False),
        sa.Column("backend", KeyText, nullable=False),
        sa.Column("circuit_count", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("sub_index_offset", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("status", KeyText, nullable=False),
        sa.Column("result_json", PayloadText),
        sa.Column("error_message", PayloadText),
        sa.Column("submit_time", sa.Text, nullable=False),
        sa.Column("update_time", sa.Text, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "task_shards",
        *_shard_columns(),
        sa.PrimaryKeyConstraint("uniqc_task_id", "shard_index", name="pk_task_shards"),
        sa.ForeignKeyConstraint(
            ["uniqc_task_id"],
            ["tasks.task_id"],
            name="fk_task_shards_uniqc_task_id_tasks",
            ondelete="CASCADE",
        ),
        if_not_exists=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_index(
        "task_shards_platform_idx", "task_shards", ["platform_task_id"], if_not_exists=True
    )
    op.create_index("task_shards_status_idx", "task_shards", ["status"], if_not_exists=True)
    op.create_table(
        "archived_task_shards",
        *_shard_columns(),
        sa.Column("archived_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("uniqc_task_id", "shard_index", name="pk_archived_task_shards"),
        if_not_exists=True,
        **MYSQL_TABLE_ARGS,
    )
    op.create_index(
        "archived_task_shards_platform_idx",
        "archived_task_shards",
        ["platform_task_id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("archived_task_shards", if_exists=True)
    op.drop_table("task_shards", if_exists=True)
