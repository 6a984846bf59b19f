"""v3: an ``error_message`` column on ``tasks`` and ``archived_tasks``.

Schema: adds the nullable ``error_message`` column to both tables (last
column, as the reference's ``ALTER TABLE ... ADD COLUMN``).
Data: existing rows read NULL.
Downgrade: drops the column from both tables (its values are lost).
On engines without transactional DDL a half-applied run is safe to repeat:
a column already present is not added again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from uniqc_store.column_types import PayloadText

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("tasks", "archived_tasks")


def _has_column(table: str) -> bool:
    if context.is_offline_mode():  # --sql: no database to look at
        return False
    columns = sa.inspect(op.get_bind()).get_columns(table)
    return any(c["name"] == "error_message" for c in columns)


def upgrade() -> None:
    for table in TABLES:
        if not _has_column(table):
            op.add_column(table, sa.Column("error_message", PayloadText))


def downgrade() -> None:
    for table in TABLES:
        if context.is_offline_mode() or _has_column(table):
            op.drop_column(table, "error_message")
