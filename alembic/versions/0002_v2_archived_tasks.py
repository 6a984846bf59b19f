"""v2: the ``archived_tasks`` table and its three indexes.

Schema: creates ``archived_tasks`` (the ``tasks`` columns plus
``archived_at``) with ``archived_backend_idx``, ``archived_status_idx`` and
``archived_submit_time_idx``.
Data: none.
Downgrade: drops ``archived_tasks`` (every archived row goes with it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from uniqc_store.column_types import MYSQL_TABLE_ARGS, SQLITE_NULLABLE_PK, KeyText, PayloadText

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_tasks",
        sa.Column("task_id", KeyText, primary_key=True, info={SQLITE_NULLABLE_PK: True}),
        sa.Column("backend", KeyText, nullable=False),
        sa.Column("status", KeyText, nullable=False),
        sa.Column("shots", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("submit_time", KeyText, nullable=False),
        sa.Column("update_time", sa.Text, nullable=False),
        sa.Column("result_json", PayloadText),
        sa.Column("metadata_json", PayloadText, nullable=False, server_default="{}"),
        sa.Column("archived_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_archived_tasks"),
        if_not_exists=True,
        **MYSQL_TABLE_ARGS,
    )
    for column in ("backend", "status", "submit_time"):
        op.create_index(f"archived_{column}_idx", "archived_tasks", [column], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("archived_tasks", if_exists=True)
