"""v9: counts that do not scan on the servers, kept by sharded counter rows (issue 28).

Schema, PostgreSQL and MySQL/MariaDB: a table ``task_counts`` (``archived``
0/1, ``status``, ``backend``, ``shard``, ``n``; primary key ``(archived,
status, backend, shard)``), the servers' form of SQLite's table of 0007, and
six row triggers, named as SQLite's (``tasks_count_insert``,
``..._delete``, ``..._update`` and the same on ``archived_tasks``), that add
+1 / -1 for every row inserted, deleted, or updated with another
``status`` or ``backend``, in the writer's own transaction. Each writer adds
to the shard of its server connection (``pg_backend_pid() % 16``,
``CONNECTION_ID() % 16``) with an upsert: concurrent savers of one (status,
backend) group land on different rows (one counter row would make every
save of a group wait for the one before it to commit), and a count is the
``SUM(n)`` of at most 16 rows per group. A shard may go below zero (a task
counted in by one connection, out by another); only the sums mean anything.
PostgreSQL: one trigger function, ``uniqc_store_count_task(archived)``, naming
``task_counts`` with the schema it was created in (another tool writing the
tables with its own ``search_path`` still finds it); ``status`` and
``backend`` are ``COLLATE "C"``, as 0008 makes the columns they count; and a
seventh trigger per table, ``..._count_truncate``: ``TRUNCATE`` fires no row
trigger, so this statement trigger empties that table's counts.
MySQL/MariaDB's ``TRUNCATE`` fires no trigger at all: counts are wrong after one
(the store never truncates; ``uniqc-store downgrade 0008`` then ``upgrade``
recounts).
MySQL/MariaDB: the counted columns' own collation (read from the server;
NO PAD since 0006, so ``'x'`` and ``'x '`` stay two groups).
SQLite: nothing changes (its counters came in 0007); ``user_version`` becomes 9.

Data: the counters are filled from the rows, exactly, while writers run.
PostgreSQL: the task tables are locked against writes (``SHARE ROW
EXCLUSIVE``, which creating a trigger takes anyway; both are taken up front)
until the revision commits, one transaction: writers wait for the count
(0.8 s for a million tasks, measured), readers do not. A move between the
tables caught half-way may deadlock with it: the server aborts one of the two
(the store runs its call again; the revision is rolled back whole, to be run
again). MySQL/MariaDB commit each DDL statement, so no lock can span "make the
triggers, count the rows": once every trigger is there (creating one waits for
every open transaction that wrote the table), every commit changes rows and
counters alike, so ``rows - counters`` per group, read in ONE statement (one
snapshot), is fixed from then on, and adding it to the counters makes them
exact, whatever commits meanwhile. Run again, it adds nothing (the difference
is zero). No table lock is needed (Galera has none that holds across nodes).

Downgrade: drops the triggers, the function and ``task_counts``; no row of the
store's tables changes. MySQL/MariaDB: a run stopped half-way is safe to repeat
either way (what is there is not made again; what is gone is not dropped again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COUNTS_TABLE = "task_counts"
#: Shards per (archived, status, backend) group.
SHARDS = 16
#: Each task table and its ``archived`` value in ``task_counts``.
COUNTED = (("tasks", 0), ("archived_tasks", 1))
EVENTS = ("insert", "delete", "update")
PG_FUNCTION = "uniqc_store_count_task"


def _dialect() -> str:
    return op.get_context().dialect.name


def upgrade() -> None:
    if _dialect() == "postgresql":
        _upgrade_postgresql()
    elif _dialect() in ("mysql", "mariadb"):
        _upgrade_mysql()


def downgrade() -> None:
    dialect = _dialect()
    if dialect == "sqlite":
        return
    for table, _archived in COUNTED:
        for event in (*EVENTS, "truncate") if dialect == "postgresql" else EVENTS:
            on = f" ON {table}" if dialect == "postgresql" else ""
            op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{event}{on}")
    if dialect == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    op.execute(f"DROP TABLE IF EXISTS {COUNTS_TABLE}")


# -- PostgreSQL ------------------------------------------------------------------------


def _pg_qualified_table() -> str:
    """``task_counts`` with the schema the revision runs in, quoted."""
    if context.is_offline_mode():  # --sql: the schema is the DBA's session's
        return COUNTS_TABLE
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar()
    return f"{schema}.{COUNTS_TABLE}" if schema else COUNTS_TABLE


def _pg_add(counts: str, *changes: tuple[str, int]) -> str:
    """One upsert adding ``delta`` to the group of each ``(row, delta)`` (an update's two
    groups in one statement: they differ, or its trigger would not have fired)."""
    values = ", ".join(
        f"(in_archive, {row}.status, {row}.backend, in_shard, {delta})" for row, delta in changes
    )
    return (
        f"INSERT INTO {counts} AS c (archived, status, backend, shard, n) VALUES {values}"
        " ON CONFLICT (archived, status, backend, shard) DO UPDATE SET n = c.n + excluded.n;"
    )


def _upgrade_postgresql() -> None:
    op.execute("LOCK TABLE tasks, archived_tasks IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        f"CREATE TABLE {COUNTS_TABLE} ("
        " archived SMALLINT NOT NULL,"
        ' status TEXT COLLATE "C" NOT NULL,'
        ' backend TEXT COLLATE "C" NOT NULL,'
        " shard SMALLINT NOT NULL,"
        " n BIGINT NOT NULL,"
        f" CONSTRAINT pk_{COUNTS_TABLE} PRIMARY KEY (archived, status, backend, shard))"
    )
    counts = _pg_qualified_table()
    op.execute(
        f"CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "DECLARE\n"
        "  in_archive SMALLINT := TG_ARGV[0]::SMALLINT;\n"
        f"  in_shard SMALLINT := pg_backend_pid() % {SHARDS};\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {_pg_add(counts, ('NEW', 1))}\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        f"    {_pg_add(counts, ('OLD', -1))}\n"
        "  ELSIF TG_OP = 'UPDATE' THEN\n"
        f"    {_pg_add(counts, ('OLD', -1), ('NEW', 1))}\n"
        "  ELSE\n"  # TRUNCATE: no row trigger fires, the table's counts go
        f"    DELETE FROM {counts} WHERE archived = in_archive;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END\n"
        "$body$"
    )
    for table, archived in COUNTED:
        run = f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}('{archived}')"
        op.execute(f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} {run}")
        op.execute(f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} {run}")
        op.execute(
            f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF status, backend ON {table}"
            " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status"
            f" OR OLD.backend IS DISTINCT FROM NEW.backend)"
            f" EXECUTE FUNCTION {PG_FUNCTION}('{archived}')"
        )
        op.execute(  # TRUNCATE fires no row trigger: this one empties the table's counts
            f"CREATE TRIGGER {table}_count_truncate AFTER TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}('{archived}')"
        )
        op.execute(  # under the lock: no write is in flight, none starts until COMMIT
            f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, shard, n)"
            f" SELECT {archived}, status, backend, 0, count(*) FROM {table}"
            " GROUP BY status, backend"
        )


# -- MySQL / MariaDB -------------------------------------------------------------------


def _mysql_collation() -> str:
    """The collation of ``tasks.status`` (NO PAD binary since 0006): the counters'
    key columns compare as the columns they count."""
    if context.is_offline_mode():
        return "utf8mb4_nopad_bin" if _dialect() == "mariadb" else "utf8mb4_0900_bin"
    found = op.get_bind().execute(
        sa.text(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
            " DATABASE() AND TABLE_NAME = 'tasks' AND COLUMN_NAME = 'status'"
        )
    )
    return str(found.scalar_one())


def _mysql_existing_triggers() -> set[str]:
    if context.is_offline_mode():
        return set()
    rows = op.get_bind().execute(
        sa.text(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        )
    )
    return {str(name) for (name,) in rows}


def _mysql_add(archived: int, *changes: tuple[str, int]) -> str:
    """One upsert adding ``delta`` to the group of each ``(row, delta)``."""
    values = ", ".join(
        f"({archived}, {row}.status, {row}.backend, CONNECTION_ID() % {SHARDS}, {delta})"
        for row, delta in changes
    )
    return (
        f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, shard, n) VALUES {values}"
        " ON DUPLICATE KEY UPDATE n = n + VALUES(n)"
    )


def _upgrade_mysql() -> None:
    collation = _mysql_collation()
    key = f"VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {COUNTS_TABLE} ("
        f" archived TINYINT NOT NULL, status {key}, backend {key},"
        " shard TINYINT NOT NULL, n BIGINT NOT NULL,"
        " PRIMARY KEY (archived, status, backend, shard))"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    existing = _mysql_existing_triggers()
    for table, archived in COUNTED:
        bodies = {
            "insert": _mysql_add(archived, ("NEW", 1)),
            "delete": _mysql_add(archived, ("OLD", -1)),
            "update": (
                "BEGIN IF NOT (OLD.status <=> NEW.status AND OLD.backend <=> NEW.backend) THEN "
                f"{_mysql_add(archived, ('OLD', -1), ('NEW', 1))}; END IF; END"
            ),
        }
        for event, body in bodies.items():
            name = f"{table}_count_{event}"
            if name not in existing:
                op.execute(
                    f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} FOR EACH ROW {body}"
                )
    _mysql_fill()


#: Per group: the rows minus what the counters hold, in one statement (one snapshot).
_MYSQL_DIFFERENCE = (
    "SELECT archived, status, backend, SUM(n) FROM ("
    " SELECT 0 AS archived, status, backend, COUNT(*) AS n FROM tasks GROUP BY status, backend"
    " UNION ALL SELECT 1, status, backend, COUNT(*) FROM archived_tasks GROUP BY status, backend"
    f" UNION ALL SELECT archived, status, backend, -SUM(n) FROM {COUNTS_TABLE}"
    " GROUP BY archived, status, backend"
    ") AS d GROUP BY archived, status, backend HAVING SUM(n) <> 0"
)


def _mysql_fill() -> None:
    """Add ``rows - counters`` to the counters (see the module's docstring for why it
    is exact beside running writers, and a no-op when run again)."""
    if context.is_offline_mode():  # --sql: the DBA runs it with the store stopped
        for table, archived in COUNTED:
            op.execute(
                f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, shard, n)"
                f" SELECT {archived}, status, backend, 0, COUNT(*) FROM {table}"
                " GROUP BY status, backend"
            )
        return
    conn = op.get_bind()
    conn.exec_driver_sql("COMMIT")  # a fresh snapshot: the triggers' DDL is behind it
    differences = conn.execute(sa.text(_MYSQL_DIFFERENCE)).all()
    for archived, status, backend, n in differences:
        conn.execute(
            sa.text(
                f"INSERT INTO {COUNTS_TABLE} (archived, status, backend, shard, n)"
                " VALUES (:archived, :status, :backend, 0, :n)"
                " ON DUPLICATE KEY UPDATE n = n + :n"
            ),
            {"archived": archived, "status": status, "backend": backend, "n": int(n)},
        )
