"""v11: PostgreSQL counts inserted and deleted rows per statement, so bulk writes stay linear.

Schema, PostgreSQL: 0009's ``tasks_count_insert`` / ``tasks_count_delete`` and
``archived_tasks_count_insert`` / ``..._delete`` (same names) become statement
triggers over a transition table, run by a new function,
``uniqc_store_count_tasks(archived)``: each INSERT or DELETE statement adds, per
(status, backend) group it wrote, one upsert of its net change to its
connection's shard of ``task_counts``, instead of one upsert per row. The update
and truncate triggers and 0009's function ``uniqc_store_count_task`` stay.

Why: a row trigger upserts the same few counter rows once per row, all in the
writer's one transaction. PostgreSQL keeps every version of a row updated in an
open transaction and walks them on each later look-up of that row, so a
statement writing n rows cost O(n^2): measured here, 25k/50k/100k inserted rows
in one statement took 1.7/6.5/27.4 s with the row trigger against 0.35 s for
100k without it, and an import of 1M tasks (its one set-based upsert of 333k
tasks) did not finish in 24 minutes. With the statement trigger, 100k rows take
0.40 s and 1M 4.5 s; a single-row INSERT costs the same as with the row trigger
(pgbench, one INSERT per transaction: 0.41-0.54 ms either way beside 0.35 ms
without a trigger).

Why not the update trigger too: an UPDATE trigger with transition tables can
name no columns and has no per-row ``WHEN``, so it would run for every UPDATE
statement, and the store's save (an upsert) fires both the INSERT and the UPDATE
statement triggers: measured with all four as statement triggers, a save cost
13-21% more than without counters, against 0009's row trigger, which costs
nothing when status and backend stay. So a statement updating the status or
backend of very many rows at once (an import over a store whose tasks changed)
still pays per row; inserts, deletes and the archive's moves (an insert and a
delete) do not.

MySQL/MariaDB have no statement triggers, and InnoDB updates a row in place
(its old versions go to the undo log, which the writer's own look-up does not
walk), so their row triggers of 0009 stay. SQLite: nothing changes
(``user_version`` becomes 11).

Data: none; the counters are right before and stay right. The swap runs in
one transaction under ``SHARE ROW EXCLUSIVE`` locks on both tables (what
creating a trigger takes anyway, taken up front in one order): writers wait
for it (milliseconds), readers do not, and no write is counted twice or
missed. Downgrade puts 0009's row triggers back the same way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COUNTS_TABLE = "task_counts"
#: Shards per (archived, status, backend) group (0009's).
SHARDS = 16
#: Each task table and its ``archived`` value in ``task_counts``.
COUNTED = (("tasks", 0), ("archived_tasks", 1))
ROW_FUNCTION = "uniqc_store_count_task"
STATEMENT_FUNCTION = "uniqc_store_count_tasks"
LOCK = "LOCK TABLE tasks, archived_tasks IN SHARE ROW EXCLUSIVE MODE"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(LOCK)
    op.execute(_statement_function(_qualified_counts()))
    for table, archived in COUNTED:
        run = f"FOR EACH STATEMENT EXECUTE FUNCTION {STATEMENT_FUNCTION}('{archived}')"
        for event, rows in (("insert", "NEW TABLE AS added"), ("delete", "OLD TABLE AS gone")):
            op.execute(f"DROP TRIGGER {table}_count_{event} ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_count_{event} AFTER {event.upper()} ON {table}"
                f" REFERENCING {rows} {run}"
            )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(LOCK)
    for table, archived in COUNTED:
        run = f"FOR EACH ROW EXECUTE FUNCTION {ROW_FUNCTION}('{archived}')"
        for event in ("insert", "delete"):
            op.execute(f"DROP TRIGGER {table}_count_{event} ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_count_{event} AFTER {event.upper()} ON {table} {run}"
            )
    op.execute(f"DROP FUNCTION {STATEMENT_FUNCTION}()")


def _qualified_counts() -> str:
    """``task_counts`` with the schema the revision runs in, quoted (as 0009 names it,
    so another tool's ``search_path`` still finds it)."""
    if context.is_offline_mode():  # --sql: the schema is the DBA's session's
        return COUNTS_TABLE
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar()
    return f"{schema}.{COUNTS_TABLE}" if schema else COUNTS_TABLE


def _upsert(counts: str, changes: str) -> str:
    """Add each group's net change (``changes``: rows of status, backend, d) to this
    connection's shard; groups whose changes cancel out are not written."""
    return (
        f"INSERT INTO {counts} AS c (archived, status, backend, shard, n)"
        " SELECT in_archive, status, backend, in_shard, sum(d)"
        f" FROM ({changes}) AS changes GROUP BY status, backend HAVING sum(d) <> 0"
        " ON CONFLICT (archived, status, backend, shard) DO UPDATE SET n = c.n + excluded.n;"
    )


def _statement_function(counts: str) -> str:
    # PL/pgSQL plans each statement when it first runs, so the branch naming ``gone``
    # is never planned for an INSERT's trigger (which has only ``added``), nor the reverse.
    return (
        f"CREATE FUNCTION {STATEMENT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "DECLARE\n"
        "  in_archive SMALLINT := TG_ARGV[0]::SMALLINT;\n"
        f"  in_shard SMALLINT := pg_backend_pid() % {SHARDS};\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {_upsert(counts, 'SELECT status, backend, 1 AS d FROM added')}\n"
        "  ELSE\n"
        f"    {_upsert(counts, 'SELECT status, backend, -1 AS d FROM gone')}\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    )
