"""Revision 0007 (indexes for filtered pages and counts; SQLite's trigger-kept counters)
up and down with data on every engine, counts that stay exact whoever writes the file
(the reference store with plain sqlite3 included), and a MySQL run stopped half-way."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, inspect, text

from tests import reference_db as ref
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.records import APPLICATION_ID, CURRENT_SCHEMA_VERSION

NEW_INDEXES = {
    "tasks": {
        "tasks_status_time_idx": ["status", "submit_time"],
        "tasks_status_backend_time_idx": ["status", "backend", "submit_time"],
        "tasks_backend_time_idx": ["backend", "submit_time"],
    },
    "archived_tasks": {
        "archived_status_time_idx": ["status", "submit_time"],
        "archived_status_backend_time_idx": ["status", "backend", "submit_time"],
        "archived_backend_time_idx": ["backend", "submit_time"],
    },
}
#: The reference's indexes 0007 replaces (each new one starts with their column).
REPLACED = {
    "tasks": {"tasks_backend_idx": ["backend"], "tasks_status_idx": ["status"]},
    "archived_tasks": {"archived_backend_idx": ["backend"], "archived_status_idx": ["status"]},
}
STATUSES = ("success", "failed", "running", "pending", "cancelled")


def indexes(engine: Engine, table: str) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            str(i["name"]): [str(c) for c in i["column_names"]]
            for i in inspect(conn).get_indexes(table)
        }


def counter_rows(engine: Engine) -> dict[tuple[int, str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT archived, status, backend, n FROM task_counts"))
        return {(a, s, b): n for a, s, b, n in rows if n}


def seed(store: TaskStore, count: int = 60) -> None:
    store.save_many(
        TaskInfo(task_id=f"uqt_{i:04d}", backend=f"b{i % 3}", status=STATUSES[i % 5])
        for i in range(count)
    )
    for i in range(0, count, 7):
        store.save_shard(TaskShard(f"uqt_{i:04d}", 0, f"p{i}", f"b{i % 3}"))
    for i in range(0, count, 10):  # success tasks: archived
        store.archive_task(f"uqt_{i:04d}")


def expected_groups(store: TaskStore, archived: bool) -> dict[tuple[str, str], int]:
    """The groups counted from the rows themselves (not from any counter)."""
    infos = store.list_archived() if archived else store.list()
    return dict(Counter((t.status, t.backend) for t in infos))


def table_rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}")))
            for t in ("tasks", "archived_tasks", "task_shards", "archived_task_shards")
        }


def test_0007_down_and_up_with_data(fresh_url: URL) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0007")
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        assert database_version(conn) == 7
        if sqlite:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 7
            assert conn.exec_driver_sql("PRAGMA application_id").scalar() == APPLICATION_ID
        assert inspect(conn).has_table("task_counts") == sqlite  # no counter rows on servers
    for table, made in NEW_INDEXES.items():
        assert made.items() <= indexes(engine, table).items()
        assert not set(REPLACED[table]) & set(indexes(engine, table))
    store = TaskStore(url=fresh_url, auto_migrate=True)
    seed(store)
    store.close()
    before = table_rows(engine)

    downgrade(engine, "0006")
    with engine.connect() as conn:
        assert database_version(conn) == 6
        assert not inspect(conn).has_table("task_counts")
        if sqlite:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 6
            triggers = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")
            assert triggers.all() == []
    assert table_rows(engine) == before
    for table, made in NEW_INDEXES.items():
        assert not set(made) & set(indexes(engine, table))
        assert REPLACED[table].items() <= indexes(engine, table).items()
    with engine.begin() as conn:  # rows written at 0006, by no trigger: 0007 counts them
        conn.execute(
            text(
                "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
                " metadata_json) VALUES ('uqt_at6', 'b6', 'failed', 1, 't', 't', '{}')"
            )
        )
        conn.execute(text("DELETE FROM tasks WHERE task_id = 'uqt_0001'"))
    written = table_rows(engine)

    upgrade(engine, "0007")  # and up again
    assert table_rows(engine) == written
    store = TaskStore(url=fresh_url, auto_migrate=True)  # to head: the servers' come in 0009
    assert store._counters
    for archived in (False, True):
        assert store.tally(archived=archived).groups == expected_groups(store, archived)
    assert store.count(status="failed", backend="b6") == 1
    if sqlite:  # filled from the rows that were there
        assert counter_rows(engine) == {
            (int(a), s, b): n
            for a in (False, True)
            for (s, b), n in expected_groups(store, a).items()
        }
    store.close()
    engine.dispose()


def test_counts_stay_exact_through_every_write(fresh_url: URL) -> None:
    """Every write path of the store (save, save_many, modify, delete, clear_completed,
    archive, restore, archive_expired, purge, import, clear_all) keeps every count equal
    to the rows' own count, on every engine."""
    from uniqc_store.repository import transfer

    store = TaskStore(url=fresh_url, auto_migrate=True)

    def check() -> None:
        for archived in (False, True):
            rows = expected_groups(store, archived)
            tally = store.tally(archived=archived)
            assert tally.groups == rows
            counter = store.count_archived if archived else store.count
            assert counter() == sum(rows.values())
            for status in STATUSES:
                assert counter(status=status) == sum(n for (s, _), n in rows.items() if s == status)
                for backend in ("b0", "b1", "b2", "nope"):
                    assert counter(status=status, backend=backend) == rows.get((status, backend), 0)
            for backend in ("b0", "b1", "b2"):
                assert counter(backend=backend) == sum(
                    n for (_, b), n in rows.items() if b == backend
                )

    seed(store)
    check()
    store.save(TaskInfo(task_id="uqt_0001", backend="b9", status="success"))  # both change
    store.save(TaskInfo(task_id="uqt_0002", backend="b2", status="failed"))  # neither
    store.modify("uqt_0003", lambda t: setattr(t, "status", "cancelled"))
    check()
    store.delete("uqt_0004")
    store.clear_completed()
    store.restore_task("uqt_0010")
    check()
    exported: list[str] = []
    transfer.export_jsonl(store, _Lines(exported))
    store.archive_expired(hours=0, terminal_only=False)
    check()
    store.purge_archived(older_than_hours=0)
    check()
    transfer.import_jsonl(store, exported)
    check()
    store.clear_all()
    check()
    assert store.count() == 0 and store.tally().groups == {}
    store.close()


class _Lines:
    """A text sink keeping each written line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, s: str) -> int:
        if s != "\n":
            self.lines.append(s)
        return len(s)


def test_counts_stay_exact_when_the_reference_writes_the_file(tmp_path: Path) -> None:
    """The reference store writes a 0007 file with plain sqlite3 (upserts, deletes, its
    archive move): the triggers keep the counters right, and its own checks still pass
    (it opens the file as it is, its rowcounts are its rows only)."""
    store = TaskStore(cache_dir=tmp_path)
    seed(store, 20)
    store.close()
    path = tmp_path / "tasks.sqlite"
    row = ref.reference_open_and_use(path, "uqt_ref")  # the reference's own open and save
    assert row["status"] == "running" and row["shots"] == 7
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
            " result_json, metadata_json, error_message) VALUES ('uqt_ref', 'ref', 'success',"
            " 7, 't', 't', NULL, '{}', NULL) ON CONFLICT(task_id) DO UPDATE SET"
            " backend = excluded.backend, status = excluded.status"
        )
        assert conn.execute("DELETE FROM tasks WHERE task_id = 'uqt_0001'").rowcount == 1
        moved = conn.execute("SELECT * FROM tasks WHERE task_id = 'uqt_0002'").fetchone()
        conn.execute(
            "INSERT INTO archived_tasks (task_id, backend, status, shots, submit_time,"
            " update_time, result_json, metadata_json, error_message, archived_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'now')",
            moved,
        )
        conn.execute("DELETE FROM tasks WHERE task_id = 'uqt_0002'")
        cleared = conn.execute("DELETE FROM tasks WHERE status IN ('failed', 'cancelled')")
        assert cleared.rowcount == sum(1 for i in range(20) if i % 5 in (1, 4) and i != 1)
    conn.close()
    assert ref.schema_facts(path)["tasks"]["columns"]  # still the reference's tables
    store = TaskStore(cache_dir=tmp_path)
    assert store._counters  # the counters are what is read
    for archived in (False, True):
        assert store.tally(archived=archived).groups == expected_groups(store, archived)
    assert store.count(status="success", backend="ref") == 1
    assert store.schema_version() == CURRENT_SCHEMA_VERSION
    store.close()


def test_a_file_without_counters_is_counted_from_its_rows(tmp_path: Path) -> None:
    """``create_all`` makes the tables without ``task_counts``: counts scan the rows."""
    from uniqc_store.schema.tables import metadata

    path = tmp_path / "t.sqlite"
    engine = create_store_engine(URL.create("sqlite+pysqlite", database=str(path)))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE uniqc_store_alembic_version (version_num VARCHAR(32))"))
        conn.execute(
            text(f"INSERT INTO uniqc_store_alembic_version VALUES ('{CURRENT_SCHEMA_VERSION:04d}')")
        )
    store = TaskStore(engine=engine)
    assert not store._counters
    seed(store, 12)
    assert store.tally().groups == expected_groups(store, False)
    assert store.count(status="failed", backend="b1") == expected_groups(store, False).get(
        ("failed", "b1"), 0
    )
    store.close()
    engine.dispose()


@pytest.mark.parametrize("stop_after", [1, 4])
def test_a_0007_stopped_half_way_completes_when_run_again(
    fresh_url: URL, stop_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB commits each CREATE INDEX as it runs: a run that failed after some of
    them is run again and creates only the rest (elsewhere the run rolls back whole)."""
    from alembic import op

    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0006")
    real = op.create_index
    made: list[str] = []

    def failing(name: str, *args: object, **kwargs: object) -> object:
        if len(made) == stop_after:
            raise RuntimeError("injected failure in 0007")
        made.append(name)
        return real(name, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(op, "create_index", failing)
        with pytest.raises(RuntimeError, match="injected"):
            upgrade(engine)
    with engine.connect() as conn:
        assert database_version(conn) == 6
    upgrade(engine, "0007")
    with engine.connect() as conn:
        assert database_version(conn) == 7
    for table, new in NEW_INDEXES.items():
        assert new.items() <= indexes(engine, table).items()
        assert not set(REPLACED[table]) & set(indexes(engine, table))
    downgrade(engine, "0006")
    for table, new in NEW_INDEXES.items():
        assert not set(new) & set(indexes(engine, table))
        assert REPLACED[table].items() <= indexes(engine, table).items()
    engine.dispose()


def test_a_store_open_while_the_file_is_downgraded_counts_from_the_rows(tmp_path: Path) -> None:
    """Another process takes the file below 0007: the open store's next count finds the
    counters gone and counts the rows (and uses the counters again once they are back)."""
    store = TaskStore(cache_dir=tmp_path)
    seed(store, 15)
    assert store._counters
    engine = create_store_engine(URL.create("sqlite+pysqlite", database=str(store.db_path)))
    downgrade(engine, "0006")
    groups = expected_groups(store, False)
    assert store.count(status="failed") == sum(n for (s, _), n in groups.items() if s == "failed")
    assert not store._counters
    upgrade(engine)
    store.upgrade()  # what a store does to see the new schema
    assert store._counters and store.tally().groups == expected_groups(store, False)
    store.close()
    engine.dispose()
