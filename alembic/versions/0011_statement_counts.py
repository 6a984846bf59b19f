"""v11: PostgreSQL's counters kept per statement, not per row, so a bulk write stays linear.

Schema, PostgreSQL: 0009's counting triggers on ``tasks`` and ``archived_tasks``
(same names: ``..._count_insert``, ``..._delete``, ``..._update``,
``..._truncate``) become statement triggers with transition tables, run by one
new function, ``uniqc_store_count_tasks(archived)``; 0009's row function
``uniqc_store_count_task`` goes. Each INSERT, DELETE or UPDATE statement adds,
per (status, backend) group it touched, one upsert of its net change to its
connection's shard of ``task_counts``, instead of one upsert per row.

Why: a row trigger upserts the same few counter rows once per row, all in the
writer's one transaction. PostgreSQL keeps every version of a row updated in an
open transaction and walks them on each later look-up of that row, so a
statement writing n rows cost O(n^2): measured here, 25k/50k/100k inserted rows
in one statement took 1.7/6.5/27.4 s with the row trigger against 0.35 s for
100k without it, and an import of 1M tasks (its one set-based upsert of 333k
tasks) did not finish in 24 minutes. With the statement trigger, 100k rows take
0.40 s and 1M 4.5 s; a single-row write costs the same as with the row trigger
(pgbench, one INSERT per transaction: 0.41-0.54 ms either way beside 0.35 ms
without a trigger).

An UPDATE trigger with transition tables cannot name columns (``UPDATE OF``)
and has no per-row ``WHEN``: it runs for every UPDATE statement, and only
groups whose net change is not zero are written (a save that keeps its status
and backend writes no counter).

MySQL/MariaDB have no statement triggers, and InnoDB updates a row in place
(its old versions go to the undo log, which a look-up by the writer does not
walk), so their row triggers of 0009 stay. SQLite: nothing changes
(``user_version`` becomes 11).

Data: none; the counters are right before and stay right. The swap runs in
one transaction under ``SHARE ROW EXCLUSIVE`` locks on both tables (what
creating a trigger takes anyway, taken up front in one order): writers wait
for it (a few milliseconds), readers do not, and no write is counted twice or
missed. Downgrade puts 0009's row triggers and function back the same way.
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
EVENTS = ("insert", "delete", "update", "truncate")
ROW_FUNCTION = "uniqc_store_count_task"
STATEMENT_FUNCTION = "uniqc_store_count_tasks"
LOCK = "LOCK TABLE tasks, archived_tasks IN SHARE ROW EXCLUSIVE MODE"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(LOCK)
    _drop_triggers()
    op.execute(f"DROP FUNCTION {ROW_FUNCTION}()")
    op.execute(_statement_function(_qualified_counts()))
    for table, archived in COUNTED:
        run = f"FOR EACH STATEMENT EXECUTE FUNCTION {STATEMENT_FUNCTION}('{archived}')"
        op.execute(
            f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table}"
            f" REFERENCING NEW TABLE AS added {run}"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table}"
            f" REFERENCING OLD TABLE AS gone {run}"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE ON {table}"
            f" REFERENCING OLD TABLE AS gone NEW TABLE AS added {run}"
        )
        op.execute(f"CREATE TRIGGER {table}_count_truncate AFTER TRUNCATE ON {table} {run}")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(LOCK)
    _drop_triggers()
    op.execute(f"DROP FUNCTION {STATEMENT_FUNCTION}()")
    op.execute(_row_function(_qualified_counts()))
    for table, archived in COUNTED:
        run = f"FOR EACH ROW EXECUTE FUNCTION {ROW_FUNCTION}('{archived}')"
        op.execute(f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} {run}")
        op.execute(f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} {run}")
        op.execute(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF status, backend ON {table}"
            " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status"
            " OR OLD.backend IS DISTINCT FROM NEW.backend)"
            f" EXECUTE FUNCTION {ROW_FUNCTION}('{archived}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_count_truncate AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {ROW_FUNCTION}('{archived}')"
        )


def _drop_triggers() -> None:
    for table, _archived in COUNTED:
        for event in EVENTS:
            op.execute(f"DROP TRIGGER {table}_count_{event} ON {table}")


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
    # PL/pgSQL plans each statement when it first runs, so a branch naming a transition
    # table its trigger does not have (``gone`` for an INSERT) is never planned there.
    added = "SELECT status, backend, 1 AS d FROM added"
    gone = "SELECT status, backend, -1 AS d FROM gone"
    return (
        f"CREATE FUNCTION {STATEMENT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "DECLARE\n"
        "  in_archive SMALLINT := TG_ARGV[0]::SMALLINT;\n"
        f"  in_shard SMALLINT := pg_backend_pid() % {SHARDS};\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {_upsert(counts, added)}\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        f"    {_upsert(counts, gone)}\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        f"    {_upsert(counts, f'{gone} UNION ALL {added}')}\n"
        "  ELSE\n"  # TRUNCATE: the table's counts go
        f"    DELETE FROM {counts} WHERE archived = in_archive;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    )


def _row_add(counts: str, *changes: tuple[str, int]) -> str:
    values = ", ".join(
        f"(in_archive, {row}.status, {row}.backend, in_shard, {delta})" for row, delta in changes
    )
    return (
        f"INSERT INTO {counts} AS c (archived, status, backend, shard, n) VALUES {values}"
        " ON CONFLICT (archived, status, backend, shard) DO UPDATE SET n = c.n + excluded.n;"
    )


def _row_function(counts: str) -> str:
    """0009's row function, as 0009 made it."""
    return (
        f"CREATE FUNCTION {ROW_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "DECLARE\n"
        "  in_archive SMALLINT := TG_ARGV[0]::SMALLINT;\n"
        f"  in_shard SMALLINT := pg_backend_pid() % {SHARDS};\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {_row_add(counts, ('NEW', 1))}\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        f"    {_row_add(counts, ('OLD', -1))}\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        f"    {_row_add(counts, ('OLD', -1), ('NEW', 1))}\n"
        "  ELSE\n"
        f"    DELETE FROM {counts} WHERE archived = in_archive;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    )
