"""Revision 0011 (PostgreSQL counts inserted and deleted rows per statement) up and down
with data; the counts equal a GROUP BY of the rows after bulk writes of many rows in one
statement (the writes 0011 is for); nothing changes on SQLite and MySQL/MariaDB.

The counts under random mixes of every write call and under concurrent writers are
0009's tests, which run at head (so on 0011's triggers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, text

from tests.alembic_runner import offline_upgrade
from tests.conftest import scratch_url
from tests.migrations.test_revision_0009 import counted, grouped, raw_insert
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.repository import transfer

STATUSES = ("success", "failed", "running", "pending", "cancelled")
BACKENDS = ("b0", "b1", "b 1", "b1 ")


def trigger_kinds(engine: Engine) -> dict[str, tuple[bool, bool]]:
    """Per counting trigger: (fires per row, has transition tables)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT tgname, (tgtype & 1) = 1, tgnewtable IS NOT NULL OR tgoldtable IS NOT NULL"
                " FROM pg_trigger WHERE NOT tgisinternal"
                " AND tgrelid IN (to_regclass('tasks'), to_regclass('archived_tasks'))"
            )
        )
        return {str(name): (bool(row), bool(tables)) for name, row, tables in rows}


def functions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'uniqc_store_count_%'"
                " AND pronamespace = to_regnamespace(current_schema())"
            )
        )
        return {str(name) for (name,) in found}


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url("postgresql", tmp_path, request) as url:
        yield url


def test_0011_down_and_up_with_data_on_postgresql(pg_url: URL) -> None:
    engine = create_store_engine(pg_url, foreign_keys=False)
    upgrade(engine, "0010")
    raw_insert(engine, [(f"uqt_{i:03d}", BACKENDS[i % 4], STATUSES[i % 5]) for i in range(30)])
    row_triggers = trigger_kinds(engine)
    assert len(row_triggers) == 8 and all(  # 0009's: per row, but TRUNCATE
        per_row == (not name.endswith("_truncate")) and not tables
        for name, (per_row, tables) in row_triggers.items()
    )
    before = grouped(engine)
    assert counted(engine) == before

    upgrade(engine)
    with engine.connect() as conn:
        assert database_version(conn) == 11
    made = trigger_kinds(engine)
    assert set(made) == set(row_triggers)  # the same names: counters_present still finds them
    for name, kind in made.items():  # inserts and deletes per statement, over their rows
        per_statement = name.endswith(("_insert", "_delete"))
        assert kind == ((False, True) if per_statement else row_triggers[name]), name
    assert functions(engine) == {"uniqc_store_count_task", "uniqc_store_count_tasks"}
    assert counted(engine) == grouped(engine) == before  # no counter moved

    store = TaskStore(url=pg_url)
    assert store._counters
    store.save(TaskInfo(task_id="uqt_000", backend="b9", status="failed"))  # an update
    store.save(TaskInfo(task_id="uqt_new", backend="b1", status="running"))  # an insert
    store.save(TaskInfo(task_id="uqt_001", backend=BACKENDS[1], status=STATUSES[1]))  # no change
    store.archive_task("uqt_002")  # a delete and an insert
    store.close()
    after = grouped(engine)
    assert counted(engine) == after != before

    downgrade(engine, "0010")
    with engine.connect() as conn:
        assert database_version(conn) == 10
    assert trigger_kinds(engine) == row_triggers
    assert functions(engine) == {"uniqc_store_count_task"}
    raw_insert(engine, [("uqt_at10", "b8", "failed")])  # counted by 0009's row trigger
    assert counted(engine) == grouped(engine)
    upgrade(engine)
    assert counted(engine) == grouped(engine)
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_bulk_statements_keep_the_counts_exact(backend: str, tmp_path: Path) -> None:
    """Thousands of rows per statement: save_many's and import's staged upserts
    (inserts, updates that move groups, updates that move none), and deletes."""
    with scratch_url(backend, tmp_path) as url:
        store = TaskStore(url=url, auto_migrate=True)
        engine = create_store_engine(url)
        try:
            ids = [f"uqt_{i:05d}" for i in range(3000)]
            store.save_many(
                TaskInfo(task_id=t, backend=BACKENDS[i % 4], status=STATUSES[i % 5])
                for i, t in enumerate(ids)
            )
            assert counted(engine) == grouped(engine)
            store.save_many(  # every other one moves group, the rest stay
                TaskInfo(task_id=t, backend=BACKENDS[(i + i % 2) % 4], status=STATUSES[i % 5])
                for i, t in enumerate(ids)
            )
            assert counted(engine) == grouped(engine)
            exported = tmp_path / "export.jsonl"
            with open(exported, "w", encoding="utf-8") as out:
                transfer.export_jsonl(store, out)
            store.save_many(TaskInfo(task_id=t, backend="b0", status="pending") for t in ids[:1500])
            with open(exported, encoding="utf-8") as lines:
                transfer.import_jsonl(store, lines)  # back as exported: 1,500 move again
            assert counted(engine) == grouped(engine)
            assert store.archive_many(ids[:1200])
            store.delete_many(ids[1200:2400])
            assert counted(engine) == grouped(engine)
            assert sum(counted(engine).values()) == 3000 - 1200
        finally:
            store.close()
            engine.dispose()


def test_0011_changes_nothing_on_sqlite_and_mysql() -> None:
    for url in ("sqlite:///x.sqlite", "mariadb+pymysql://u@127.0.0.1/db"):
        sql, statements = offline_upgrade(url, "0010:0011")
        assert statements == [
            "UPDATE uniqc_store_alembic_version SET version_num='0011' "
            "WHERE uniqc_store_alembic_version.version_num = '0010';"
        ]
        if url.startswith("sqlite"):
            assert "PRAGMA user_version = 11;" in sql
