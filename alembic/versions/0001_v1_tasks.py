"""v1: the ``tasks`` table and its three indexes.

Schema: creates ``tasks`` (task_id, backend, status, shots, submit_time,
update_time, result_json, metadata_json) with ``tasks_backend_idx``,
``tasks_status_idx`` and ``tasks_submit_time_idx``.
Data: none.
Downgrade: drops ``tasks`` and its indexes (every task row goes with it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from uniqc_store.column_types import MYSQL_TABLE_ARGS, SQLITE_NULLABLE_PK, KeyText, PayloadText

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", KeyText, primary_key=True, info={SQLITE_NULLABLE_PK: True}),
        sa.Column("backend", KeyText, nullable=False),
        sa.Column("status", KeyText, nullable=False),
        sa.Column("shots", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("submit_time", KeyText, nullable=False),
        sa.Column("update_time", sa.Text, nullable=False),
        sa.Column("result_json", PayloadText),
        sa.Column("metadata_json", PayloadText, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
        if_not_exists=True,
        **MYSQL_TABLE_ARGS,
    )
    for column in ("backend", "status", "submit_time"):
        op.create_index(f"tasks_{column}_idx", "tasks", [column], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("tasks", if_exists=True)
