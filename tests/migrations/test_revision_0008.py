"""Revision 0008 (``COLLATE "C"`` on PostgreSQL's compared columns) up and down with data
on every engine; in a PostgreSQL database with a linguistic (ICU ``en-US``) default
collation, ids order and the dashboard's id search find by code point after it and by
the locale before it and after its downgrade; the search's plans are key-range scans."""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import URL, Connection, Engine, text
from sqlalchemy.dialects import postgresql

from tests.alembic_runner import offline_upgrade, run_alembic
from tests.conftest import server_url
from tests.db.test_engines import schema_facts
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.api.dashboard import queries
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("tasks", "archived_tasks", "task_shards", "archived_task_shards")
#: The ids whose order tells the collations apart: ``"C"`` puts every capital first.
MIXED_CASE = ["uqt_B", "uqt_a", "uqt_ab1", "uqt_aB2", "uqt_90", "uqt_9f"]
BYTE_ORDER = sorted(MIXED_CASE)  # Python compares code points, as "C" does in UTF-8


def revision_0008() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rev0008", ROOT / "alembic" / "versions" / "0008_byte_order_keys.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collations(conn: Connection) -> dict[str, dict[str, str]]:
    """Each text column's collation, by table (``default``: the database's)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, a.attname, coalesce(co.collname, '') FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
            " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
            " WHERE c.relname = ANY(:tables) AND a.attnum > 0 AND NOT a.attisdropped"
            " AND a.atttypid = 'text'::regtype"
        ),
        {"tables": list(TABLES)},
    )
    found: dict[str, dict[str, str]] = {}
    for table, column, collation in rows:
        found.setdefault(table, {})[column] = collation
    return found


def index_collations(conn: Connection) -> dict[str, set[str]]:
    """The collations of every index's text columns, by index name."""
    rows = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, co.collname FROM pg_index i"
            " CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS k(oid)"
            " JOIN pg_collation co ON co.oid = k.oid"
            " WHERE i.indrelid::regclass::text = ANY(:tables)"
        ),
        {"tables": list(TABLES)},
    )
    found: dict[str, set[str]] = {}
    for index, collation in rows:
        found.setdefault(index, set()).add(collation)
    return found


def expected_collations(collation: str) -> dict[str, dict[str, str]]:
    """0008's columns at ``collation``; payloads at the database default."""
    columns = revision_0008().COLUMNS
    payloads = {
        "tasks": ("result_json", "metadata_json", "error_message"),
        "archived_tasks": ("result_json", "metadata_json", "error_message"),
        "task_shards": ("result_json", "error_message"),
        "archived_task_shards": ("result_json", "error_message"),
    }
    return {
        table: {
            **{c: collation for c in columns[table]},
            **{c: "default" for c in payloads[table]},
        }
        for table in TABLES
    }


def without_text_collations(facts: dict[str, Any]) -> dict[str, Any]:
    """Schema facts with PostgreSQL's column collations taken out of the types."""
    return {
        table: {
            **parts,
            "columns": [
                (name, type_.replace("collation='C'", ""), *rest)
                for name, type_, *rest in parts["columns"]
            ],
        }
        for table, parts in facts.items()
    }


def seed(store: TaskStore) -> None:
    store.save_many(
        TaskInfo(task_id=t, backend=f"b{i % 2}", status="running", metadata={"n": i})
        for i, t in enumerate(MIXED_CASE)
    )
    for i, task_id in enumerate(MIXED_CASE):
        store.save_shard(TaskShard(task_id, 0, f"P-{i}", "b0"))
    store.archive_task("uqt_90")


def table_rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            t: sorted((tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
            for t in TABLES
        }


def test_0008_down_and_up_with_data(fresh_url: URL) -> None:
    """Rows, keys, indexes and the foreign key survive both ways; only PostgreSQL's
    column collations change, and SQLite's ``user_version`` follows the revision."""
    engine = create_store_engine(fresh_url, foreign_keys=False)
    backend = engine.dialect.name
    upgrade(engine, "0007")
    at_7 = schema_facts(fresh_url)
    upgrade(engine, "0008")
    with engine.connect() as conn:
        assert database_version(conn) == 8
        if backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 8
        if backend == "postgresql":
            assert collations(conn) == expected_collations("C")
            assert {"C"} == set().union(*index_collations(conn).values())  # rebuilt as "C"
    at_8 = schema_facts(fresh_url)
    if backend == "postgresql":
        assert at_8 != at_7 and without_text_collations(at_8) == at_7
    else:
        assert at_8 == at_7  # nothing changes there
    store = TaskStore(url=fresh_url, auto_migrate=True)  # a store opens only head (0009)
    seed(store)
    store.close()
    downgrade(engine, "0008")  # 0009 changes no row of these tables
    before = table_rows(engine)

    downgrade(engine, "0007")
    with engine.connect() as conn:
        assert database_version(conn) == 7
        if backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 7
        if backend == "postgresql":
            assert collations(conn) == expected_collations("default")
            assert {"default"} == set().union(*index_collations(conn).values())
    assert schema_facts(fresh_url) == at_7  # exactly what 0007 had
    assert table_rows(engine) == before

    upgrade(engine, "0008")
    assert schema_facts(fresh_url) == at_8 and table_rows(engine) == before
    engine.dispose()
    engine = create_store_engine(fresh_url)  # foreign keys on (SQLite's pragma)
    with engine.begin() as conn:  # the foreign key is back, cascade included
        conn.execute(text("DELETE FROM tasks WHERE task_id = 'uqt_B'"))
        left = conn.execute(text("SELECT count(*) FROM task_shards WHERE uniqc_task_id = 'uqt_B'"))
        assert left.scalar() == 0
    engine.dispose()


def test_0008_sql_on_each_engine() -> None:
    """``--sql``: PostgreSQL gets one ALTER per table between the foreign key's drop and
    its re-creation; SQLite and MySQL only the version (and SQLite's user_version)."""
    up = run_alembic(
        "-x", "url=postgresql+psycopg://u@127.0.0.1/db", "upgrade", "0007:0008", "--sql"
    )
    assert up.returncode == 0, up.stderr
    sql = up.stdout
    for table, columns in revision_0008().COLUMNS.items():
        changes = ", ".join(f'ALTER COLUMN {c} TYPE TEXT COLLATE "C"' for c in columns)
        assert f"ALTER TABLE {table} {changes};" in sql
    assert sql.index("DROP CONSTRAINT fk_task_shards_uniqc_task_id_tasks") < sql.index(
        "ALTER TABLE tasks ALTER"
    )
    assert sql.index("ALTER TABLE archived_task_shards ALTER") < sql.index(
        "ADD CONSTRAINT fk_task_shards_uniqc_task_id_tasks FOREIGN KEY(uniqc_task_id)"
        " REFERENCES tasks (task_id) ON DELETE CASCADE"
    )
    down = run_alembic(
        "-x", "url=postgresql+psycopg://u@127.0.0.1/db", "downgrade", "0008:0007", "--sql"
    )
    assert down.returncode == 0, down.stderr
    assert 'ALTER COLUMN task_id TYPE TEXT COLLATE pg_catalog."default"' in down.stdout
    assert 'COLLATE "C"' not in down.stdout
    for url in ("sqlite:///x.sqlite", "mariadb+pymysql://u@127.0.0.1/db"):
        sql, statements = offline_upgrade(url, "0007:0008")
        assert statements == [
            "UPDATE uniqc_store_alembic_version SET version_num='0008' "
            "WHERE uniqc_store_alembic_version.version_num = '0007';"
        ]
        if url.startswith("sqlite"):
            assert "PRAGMA user_version = 8;" in sql


@pytest.fixture
def icu_url() -> Iterator[URL]:
    """A scratch PostgreSQL database whose default collation is ICU's ``en-US``
    (linguistic: case and punctuation weighed apart), dropped afterwards."""
    server = server_url("postgresql")
    name = f"uqt_test_icu_{uuid.uuid4().hex[:12]}"
    admin = create_store_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu'
                " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        )
    try:
        yield server.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def ordered_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT task_id FROM tasks ORDER BY task_id")).scalars())


def searched(store: TaskStore, prefix: str) -> list[str]:
    """The dashboard search's id matches (a store needs the database at head)."""
    return [row["task_id"] for row in queries.search(store, prefix).rows]


def by_prefix(engine: Engine, prefix: str) -> list[str]:
    """The search's own id statement, run at any revision."""
    with engine.connect() as conn:
        return [row.task_id for row in conn.execute(queries._by_task_id("live", prefix))]


def fill(engine: Engine, count: int = 3000) -> None:
    """Enough hex ids that the planner would rather not read the whole table."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
                " metadata_json) SELECT 'uqt_' || md5(i::text), 'b', 'success', 1, 't', 't', '{}'"
                " FROM generate_series(1, :n) AS i"
            ),
            {"n": count},
        )
        conn.execute(
            text(
                "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend,"
                " circuit_count, sub_index_offset, status, submit_time, update_time)"
                " SELECT task_id, 0, 'p-' || task_id, 'b', 1, 0, 'success', 't', 't' FROM tasks"
            )
        )
        conn.execute(
            text(
                "INSERT INTO archived_tasks (task_id, backend, status, shots, submit_time,"
                " update_time, metadata_json, archived_at) SELECT task_id, backend, status,"
                " shots, submit_time, update_time, metadata_json, 't' FROM tasks"
            )
        )
        conn.execute(text("ANALYZE"))


def plan(conn: Connection, sql: str) -> str:
    return "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())


def reads_range_of(index: str, shown: str) -> bool:
    """Whether the plan ``shown`` reads ``index`` (an index, index-only or bitmap index
    scan: each reads the range of the index its conditions bound) and no whole table."""
    scan = re.search(
        rf"(Index Scan|Index Only Scan) using {index} on |Bitmap Index Scan on {index}\b", shown
    )
    return scan is not None and "Seq Scan" not in shown


def compiled(stmt: Any) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@pytest.mark.postgresql  # reaches the shared PostgreSQL
def test_a_linguistic_database_compares_ids_by_code_point_from_0008(icu_url: URL) -> None:
    engine = create_store_engine(icu_url, foreign_keys=False)
    with engine.connect() as conn:  # the database's own order is linguistic
        assert conn.execute(text("SELECT 'uqt_B' < 'uqt_a'")).scalar() is False
        assert conn.execute(text("SELECT 'uqt_B' < 'uqt_a' COLLATE \"C\"")).scalar() is True
    upgrade(engine, "0007")
    with engine.begin() as conn:
        for task_id in MIXED_CASE:
            conn.execute(
                text(
                    "INSERT INTO tasks (task_id, backend, status, shots, submit_time,"
                    " update_time, metadata_json) VALUES (:t, 'b', 'running', 1, 't', 't', '{}')"
                ),
                {"t": task_id},
            )
    linguistic = ordered_ids(engine)
    assert linguistic != BYTE_ORDER and linguistic.index("uqt_a") < linguistic.index("uqt_B")

    # At 0007 the search's key range follows the locale: "uqt_9"'s range ends at
    # "uqt_:", which ICU sorts before the digits, so it is empty and misses both ids;
    # "uqt_ab"'s takes in "uqt_aB2", which does not start with it.
    assert by_prefix(engine, "uqt_9") == []
    assert sorted(by_prefix(engine, "uqt_ab")) == ["uqt_aB2", "uqt_ab1"]
    upgrade(engine)
    assert by_prefix(engine, "uqt_9") == ["uqt_90", "uqt_9f"]
    store = TaskStore(url=icu_url)
    assert ordered_ids(engine) == BYTE_ORDER
    assert searched(store, "uqt_9") == ["uqt_90", "uqt_9f"]
    assert searched(store, "uqt_ab") == ["uqt_ab1"]
    assert searched(store, "uqt_B") == ["uqt_B"]
    store.close()

    downgrade(engine, "0007")  # the linguistic order is back, exactly
    assert ordered_ids(engine) == linguistic
    with engine.connect() as conn:
        assert collations(conn) == expected_collations("default")
    assert by_prefix(engine, "uqt_9") == []  # what the search found at 0007
    assert sorted(by_prefix(engine, "uqt_ab")) == ["uqt_aB2", "uqt_ab1"]
    engine.dispose()


@pytest.mark.postgresql  # reaches the shared PostgreSQL
def test_the_id_search_is_a_key_range_scan_after_0008(icu_url: URL) -> None:
    """EXPLAIN of the search's own statements: the id prefix reads a range of
    ``pk_tasks``, the platform id its index. Before 0008 a ``LIKE`` prefix could not
    use the key in this database; from 0008 it can (the column is ``"C"``)."""
    engine = create_store_engine(icu_url, foreign_keys=False)
    upgrade(engine, "0007")
    fill(engine)
    like = "SELECT task_id FROM tasks WHERE task_id LIKE 'uqt\\_ab%'"  # _ escaped
    with engine.connect() as conn:
        assert "pk_tasks" not in plan(conn, like)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    with engine.connect() as conn:
        by_range = plan(
            conn, "SELECT * FROM tasks WHERE task_id >= 'uqt_ab' AND task_id < 'uqt_ac'"
        )
        assert reads_range_of("pk_tasks", by_range), by_range
        assert (
            "Index Cond: ((task_id >= 'uqt_ab'::text) AND (task_id < 'uqt_ac'::text))" in by_range
        )
        for which, key in (("live", "pk_tasks"), ("archived", "pk_archived_tasks")):
            search = plan(conn, compiled(queries._by_task_id(which, "uqt_ab")))
            assert reads_range_of(key, search), search
        platform = queries._by_platform_id("live").params(
            platform_id="p-uqt_c4ca4238a0b923820dcc509a6f75849b"  # md5('1')
        )
        platform_plan = plan(conn, compiled(platform))
        assert reads_range_of("task_shards_platform_idx", platform_plan), platform_plan
        assert reads_range_of("pk_tasks", platform_plan), platform_plan
        assert reads_range_of("pk_tasks", plan(conn, like))  # the range the planner derives
    engine.dispose()
