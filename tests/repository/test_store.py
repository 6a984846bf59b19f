"""The repository's task and shard API, on every engine."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from uniqc_store import (
    MissingParentTaskError,
    StoreError,
    TaskInfo,
    TaskShard,
    TaskStatus,
    TaskStore,
)
from uniqc_store.records import CURRENT_SCHEMA_VERSION


def task(task_id: str, **fields: object) -> TaskInfo:
    return TaskInfo(task_id=task_id, backend=fields.pop("backend", "b1"), **fields)  # type: ignore[arg-type]


def rows_in(store: TaskStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_save_and_get_round_trip(store: TaskStore) -> None:
    info = task(
        "uqt_1",
        status=TaskStatus.SUCCESS,
        result={"counts": {"00": 3}, "ε": [1.5, None]},
        shots=42,
        metadata={"nested": {"a": [1, 2]}, "emoji": "😀"},
        error_message="none",
    )
    store.save(info)
    got = store.get("uqt_1")
    assert got == info
    assert got is not None and got.status == "success" and type(got.status) is str
    assert store.get("missing") is None


def test_save_stamps_update_time_and_keeps_submit_time(store: TaskStore) -> None:
    info = task("uqt_1", submit_time="2020-01-01T00:00:00+00:00", update_time="old")
    store.save(info)
    assert info.update_time != "old"
    assert store.get("uqt_1").update_time == info.update_time  # type: ignore[union-attr]
    first = info.update_time
    time.sleep(0.002)
    again = task("uqt_1", submit_time="2030-01-01T00:00:00+00:00", status="running")
    store.save(again)
    got = store.get("uqt_1")
    assert got is not None
    assert got.submit_time == "2020-01-01T00:00:00+00:00"
    assert got.status == "running" and got.update_time > first


def test_list_order_filters_and_paging(store: TaskStore) -> None:
    for i in range(6):
        store.save(
            task(
                f"uqt_{i}",
                backend="a" if i % 2 else "b",
                status="success" if i < 3 else TaskStatus.RUNNING,
                submit_time=f"2024-01-0{i + 1}T00:00:00+00:00",
            )
        )
    assert [t.task_id for t in store.list()] == [f"uqt_{i}" for i in range(5, -1, -1)]
    assert [t.task_id for t in store.list(status=TaskStatus.SUCCESS)] == ["uqt_2", "uqt_1", "uqt_0"]
    assert [t.task_id for t in store.list(status="running", backend="a")] == ["uqt_5", "uqt_3"]
    assert [t.task_id for t in store.list(limit=2, offset=1)] == ["uqt_4", "uqt_3"]
    assert [t.task_id for t in store.list(offset=4)] == ["uqt_1", "uqt_0"]
    assert store.list(limit=0) == []
    assert store.count() == 6
    assert store.count(status="success") == 3
    assert store.count(backend="a") == 3
    assert store.count(status=TaskStatus.RUNNING, backend="b") == 1
    with pytest.raises(ValueError, match="limit must not be negative"):
        store.list(limit=-1)
    with pytest.raises(ValueError, match="expected one of"):
        store.count(status="bogus")


def test_list_ties(store: TaskStore, backend: str) -> None:
    """SQLite keeps the reference's tie order (newest inserted first, by rowid);
    servers have no insertion order to offer and break ties by id, descending."""
    for name in ("uqt_b", "uqt_c", "uqt_a"):
        store.save(task(name, submit_time="2024-01-01T00:00:00+00:00"))
    expected = ["uqt_a", "uqt_c", "uqt_b"] if backend == "sqlite" else ["uqt_c", "uqt_b", "uqt_a"]
    assert [t.task_id for t in store.list()] == expected


def test_delete_cascades_shards(store: TaskStore) -> None:
    store.save(task("uqt_1"))
    store.save_shards([TaskShard("uqt_1", i, f"p{i}", "b1") for i in range(3)])
    assert store.delete("uqt_1") is True
    assert store.delete("uqt_1") is False
    assert store.get_shards("uqt_1") == []
    assert rows_in(store, "task_shards") == 0


def test_clear_completed(store: TaskStore) -> None:
    for i, status in enumerate(["pending", "running", "success", "failed", "cancelled"]):
        store.save(task(f"uqt_{i}", status=status))
    store.save_shard(TaskShard("uqt_2", 0, "p", "b1"))
    assert store.clear_completed(("failed",)) == 1
    assert store.clear_completed() == 2
    assert sorted(t.status for t in store.list()) == ["pending", "running"]
    assert rows_in(store, "task_shards") == 0


def test_clear_all(store: TaskStore, backend: str) -> None:
    store.save(task("uqt_1"))
    store.save_shard(TaskShard("uqt_1", 0, "p", "b1"))
    store.archive_task("uqt_1")
    store.save(task("uqt_2"))
    store.clear_all()
    assert (store.count(), store.count_archived()) == (0, 0)
    assert store.schema_version() == CURRENT_SCHEMA_VERSION
    store.save(task("uqt_3"))
    assert store.count() == 1
    if backend == "sqlite":
        assert store.db_path is not None and store.db_path.exists()


def test_clear_all_is_seen_by_other_stores_and_loses_no_later_write(module_url: object) -> None:
    """Two stores (two connections) on one database: after one clears it, the other
    sees the empty store and its next acknowledged write is kept. (The reference
    deleted the SQLite file; a connection still open wrote into the deleted file.)"""
    with TaskStore(url=module_url, auto_migrate=True) as first, TaskStore(url=module_url) as other:
        other.save(task("uqt_marker"))
        assert first.get("uqt_marker") is not None
        first.clear_all()
        assert other.get("uqt_marker") is None and other.count() == 0
        other.save(task("uqt_after"))
        assert first.get("uqt_after") is not None
    with TaskStore(url=module_url) as reopened:
        assert [t.task_id for t in reopened.list()] == ["uqt_after"]
        reopened.clear_all()


def test_clear_all_keeps_the_sqlite_file(tmp_path: Path) -> None:
    """The file stays the same file (same inode), so nobody holds a deleted copy."""
    with TaskStore(cache_dir=tmp_path) as store:
        store.save(task("uqt_1"))
        inode = (tmp_path / "tasks.sqlite").stat().st_ino
        store.clear_all()
        assert (tmp_path / "tasks.sqlite").stat().st_ino == inode
        assert store.get("uqt_1") is None and store.count() == 0


def test_shards(store: TaskStore) -> None:
    store.save(task("uqt_1"))
    store.save(task("uqt_2"))
    shard = TaskShard(
        "uqt_1",
        1,
        "plat-b",
        "b1",
        circuit_count=4,
        sub_index_offset=4,
        result=[{"00": 1}],
        submit_time="2020-01-01T00:00:00+00:00",
    )
    store.save_shard(shard)
    store.save_shard(TaskShard("uqt_1", 0, "plat-a", "b1", status="success"))
    store.save_shard(TaskShard("uqt_2", 0, "plat-a", "b2"))
    assert [s.shard_index for s in store.get_shards("uqt_1")] == [0, 1]
    assert store.get_shards("uqt_1")[1] == shard
    assert store.get_shard_by_platform_id("plat-b") == shard
    assert store.get_shard_by_platform_id("plat-a", backend="b2").uniqc_task_id == "uqt_2"  # type: ignore[union-attr]
    assert store.get_shard_by_platform_id("nope") is None
    assert store.find_uniqc_id_by_platform_id("plat-a", backend="b1") == "uqt_1"
    assert store.find_uniqc_id_by_platform_id("plat-a", backend="b3") is None
    shard.status = "failed"
    shard.submit_time = "2099-01-01T00:00:00+00:00"
    store.save_shard(shard)
    saved = store.get_shards("uqt_1")[1]
    assert saved.status == "failed" and saved.submit_time == "2020-01-01T00:00:00+00:00"
    assert saved.update_time == shard.update_time
    assert store.delete_shards("uqt_1") == 2
    assert store.get_shards("uqt_1") == []


def test_shard_without_parent_is_refused(store: TaskStore) -> None:
    store.save(task("uqt_1"))
    with pytest.raises(MissingParentTaskError, match="'uqt_ghost'"):
        store.save_shard(TaskShard("uqt_ghost", 0, "p", "b1"))
    with pytest.raises(MissingParentTaskError):
        store.save_shards([TaskShard("uqt_1", 0, "p", "b1"), TaskShard("uqt_ghost", 0, "q", "b")])
    assert rows_in(store, "task_shards") == 0


def test_save_many_is_one_transaction(store: TaskStore) -> None:
    infos = [task(f"uqt_{i}", shots=i) for i in range(250)]
    assert store.save_many(infos) == 250
    assert store.count() == 250
    assert store.get("uqt_7").shots == 7  # type: ignore[union-attr]
    assert all(i.update_time == infos[0].update_time for i in infos)
    bad = [task("uqt_new"), task("uqt_bad", result={"x": object()})]
    with pytest.raises(TypeError, match="result of task 'uqt_bad'"):
        store.save_many(bad)
    assert store.get("uqt_new") is None
    assert store.save_many([]) == 0


@pytest.mark.one_engine  # checked before any SQL
@pytest.mark.parametrize(
    ("info", "error", "message"),
    [
        (task("uqt_1", result={"f": {1, 2}}), TypeError, "result of task 'uqt_1'"),
        (task("uqt_1", metadata={"when": object()}), TypeError, "metadata of task 'uqt_1'"),
        (task("uqt_1", result={"x": math.nan}), TypeError, "result of task 'uqt_1'"),
        (
            task("uqt_1", metadata=["not", "a", "dict"]),
            TypeError,
            "metadata of task 'uqt_1' must be a dict",
        ),
        (task("uqt_1", status="done"), ValueError, "expected one of: pending, running"),
        (task(""), ValueError, "must not be empty"),
        (task("uqt_1", shots="100"), TypeError, "shots must be an int"),
        (task("uqt_1", backend=7), TypeError, "backend must be a string"),
        (task("uqt_1", error_message=3), TypeError, "error_message"),
    ],
)
def test_bad_input_writes_nothing(
    store: TaskStore, info: TaskInfo, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.save(info)
    assert store.count() == 0


def test_bad_shard_input(store: TaskStore) -> None:
    store.save(task("uqt_1"))
    with pytest.raises(TypeError, match="result of shard 0 of task 'uqt_1'"):
        store.save_shard(TaskShard("uqt_1", 0, "p", "b", result=object()))
    with pytest.raises(ValueError, match="expected one of"):
        store.save_shard(TaskShard("uqt_1", 0, "p", "b", status="lost"))
    with pytest.raises(TypeError):
        store.save(TaskShard("uqt_1", 0, "p", "b"))  # type: ignore[arg-type]
    assert store.get_shards("uqt_1") == []


def test_broken_json_from_other_tools_reads_as_marker(store: TaskStore) -> None:
    store.save(task("uqt_ok", result={"a": 1}))
    with store.engine.begin() as conn:
        # raw text, as another tool would write it (the models' JSONText would encode it)
        conn.execute(
            text(
                "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
                " result_json, metadata_json) VALUES ('uqt_bad', 'b1', 'failed', 1,"
                " '2025-01-01T00:00:00+00:00', 'x', '{not json', '[1,')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend,"
                " status, result_json, submit_time, update_time)"
                " VALUES ('uqt_bad', 0, 'p', 'b1', 'failed', 'nan]', 't', 't')"
            )
        )
    listed = {t.task_id: t for t in store.list()}
    assert listed["uqt_bad"].result == {"_invalid_json": "{not json"}
    assert listed["uqt_bad"].metadata == {"_invalid_json": "[1,"}
    assert listed["uqt_ok"].result == {"a": 1}
    assert store.get_shards("uqt_bad")[0].result == {"_invalid_json": "nan]"}


def test_iter_tasks_streams_everything_in_id_order(store: TaskStore) -> None:
    store.save_many(
        [task(f"uqt_{i:04d}", status="success" if i % 3 else "failed") for i in range(257)]
    )
    seen = [t.task_id for t in store.iter_tasks(batch_size=50)]
    assert seen == sorted(seen) and len(seen) == 257
    assert sum(1 for _ in store.iter_tasks(status="failed", batch_size=7)) == 86
    with pytest.raises(ValueError):
        next(store.iter_tasks(batch_size=0))


def test_unicode_round_trip(store: TaskStore) -> None:
    text_value = "量子 ✓ 😀 𝔘𝔫𝔦 end"
    info = task(
        "uqt_ü😀",
        backend="后端:WK_😀",
        metadata={"note": text_value + "\u0000"},
        result={"😀": ["\x00"]},
        error_message=text_value,
    )
    store.save(info)
    got = store.get("uqt_ü😀")
    assert got == info
    assert store.count(backend="后端:WK_😀") == 1


def test_lone_surrogate_is_a_clear_error(store: TaskStore) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        store.save(task("uqt_1", error_message="bad \ud800 text"))
    assert store.count() == 0


def test_nul_in_plain_text_is_refused_everywhere(store: TaskStore) -> None:
    with pytest.raises(ValueError, match="NUL"):
        store.save(task("uqt_1", error_message="a\x00b"))
    assert store.count() == 0


def test_result_json_is_strict_json(store: TaskStore) -> None:
    store.save(task("uqt_1", result={"x": 1.5}))
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT result_json FROM tasks")).scalar_one()
    assert json.loads(raw) == {"x": 1.5}


def _lock_is_free(path: Path) -> bool:
    """Whether another connection can take the SQLite write lock at once."""
    import sqlite3

    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


@pytest.mark.parametrize("observed", [False, True], ids=["direct", "observed"])
def test_reads_hold_no_lock_on_sqlite(tmp_path: Path, observed: bool) -> None:
    """Reads, on either execution path, leave no transaction open: another
    connection can take the write lock at once."""
    from sqlalchemy import event

    with TaskStore(tmp_path) as store:
        store.save(task("uqt_1", status="success", update_time="2000-01-01T00:00:00+00:00"))
        if observed:
            event.listen(store.engine, "before_cursor_execute", lambda *args: None)
        assert store.get("uqt_1") is not None and store.count() == 1
        assert len(store.list(status="success", limit=5)) == 1
        assert [t.task_id for t in store.iter_tasks()] == ["uqt_1"]
        assert store.expired_task_ids(0) == ["uqt_1"]
        assert store.schema_version() == CURRENT_SCHEMA_VERSION
        assert _lock_is_free(tmp_path / "tasks.sqlite")


@pytest.mark.parametrize("observed", [False, True], ids=["direct", "observed"])
def test_failed_sqlite_writes_leave_no_transaction_open(tmp_path: Path, observed: bool) -> None:
    """A write that fails half-way, or cannot get the write lock in time, ends its
    transaction: nothing of it is kept and the next writer gets the lock at once."""
    import sqlite3

    from sqlalchemy import URL, event

    from uniqc_store import DatabaseBusyError

    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    with TaskStore(url=url.update_query_dict({"timeout": "0.2"})) as store:
        if observed:
            event.listen(store.engine, "before_cursor_execute", lambda *args: None)
        store.save(task("uqt_1"))
        half = [TaskShard("uqt_1", 0, "p0", "b1"), TaskShard("uqt_missing", 0, "p1", "b1")]
        with pytest.raises(MissingParentTaskError):
            store.save_shards(half)  # the first row is written, the second fails
        assert store.get_shards("uqt_1") == []
        assert _lock_is_free(tmp_path / "tasks.sqlite")

        holder = sqlite3.connect(tmp_path / "tasks.sqlite", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError, match="lock-wait") as caught:
            store.save(task("uqt_2"))
        assert 0.15 < time.monotonic() - started < 5  # the URL's ?timeout=0.2, not the 10 s default
        assert "database is locked" in str(caught.value.__cause__)
        holder.execute("ROLLBACK")
        holder.close()
        assert _lock_is_free(tmp_path / "tasks.sqlite")
        store.save(task("uqt_2"))
        assert store.count() == 2


def _listing_plan(path: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE status = 'running'"
            " ORDER BY submit_time DESC, rowid DESC LIMIT 50"
        ).fetchall()
    finally:
        conn.close()
    return " | ".join(str(step[-1]) for step in plan)


def test_a_growing_sqlite_store_keeps_planner_statistics(tmp_path: Path) -> None:
    """A long-lived store makes planner statistics as it grows instead of waiting for
    close. (Without them SQLite used to list by sorting every match; since 0007 the
    ``(status, submit_time)`` index answers a filtered first page either way.)"""
    path = tmp_path / "tasks.sqlite"
    indexed = "SEARCH tasks USING INDEX tasks_status_time_idx (status=?)"
    with TaskStore(tmp_path) as store:
        store.save_many(
            task(f"uqt_{i:05d}", status="running" if i % 5 else "success") for i in range(300)
        )
        assert not _has_statistics(path)  # too small to bother yet
        assert _listing_plan(path) == indexed
        store.save_many(task(f"uqt_{i:05d}b", status="running") for i in range(800))
        assert _has_statistics(path)
        assert _listing_plan(path) == indexed
        assert len(store.list(status="running", limit=50)) == 50


def _has_statistics(path: Path) -> bool:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        query = "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"
        if conn.execute(query).fetchone() is None:
            return False
        return conn.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'tasks'").fetchone() is not None
    finally:
        conn.close()


def test_opening_a_file_without_statistics_makes_them_unless_locked(tmp_path: Path) -> None:
    import sqlite3

    from tests.reference_db import build_reference_file, insert_rows, legacy_rows
    from uniqc_store.db.engine import create_store_engine
    from uniqc_store.migrations.runner import upgrade

    path = tmp_path / "tasks.sqlite"
    build_reference_file(path, 5)  # the reference never runs ANALYZE
    insert_rows(path, "tasks", legacy_rows(50, prefix="uqt_"))
    engine = create_store_engine(f"sqlite:///{path}")
    upgrade(engine)  # at head (0006 stamps it), so opening it needs no write lock
    engine.dispose()
    assert not _has_statistics(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # statistics wait for nobody
    started = time.monotonic()
    with TaskStore(tmp_path) as store:
        assert store.count() == 50
        assert time.monotonic() - started < 10  # not a whole busy timeout
    holder.execute("ROLLBACK")
    holder.close()
    assert not _has_statistics(path)
    with TaskStore(tmp_path) as store:
        assert _has_statistics(path)
        assert store.count() == 50


def test_modify_changes_a_task_in_place(store: TaskStore) -> None:
    store.save(task("uqt_mod", status="running", metadata={"a": 1}, submit_time="2024-01-01"))
    before = store.get("uqt_mod")
    assert before is not None

    def change(info: TaskInfo) -> None:
        info.status = "success"
        info.result = {"counts": {"0": 1}}
        info.metadata["b"] = 2
        info.submit_time = "2030-01-01"  # kept, as save() keeps it

    written = store.modify("uqt_mod", change)
    assert written is not None and written.status == "success"
    after = store.get("uqt_mod")
    assert after is not None
    assert written == after  # what was written, submit_time included
    assert after.status == "success" and after.result == {"counts": {"0": 1}}
    assert after.metadata == {"a": 1, "b": 2}
    assert after.submit_time == "2024-01-01"
    assert after.update_time == written.update_time >= before.update_time
    assert store.modify("uqt_missing", change) is None
    assert store.get("uqt_missing") is None

    def unset(info: TaskInfo) -> None:
        info.metadata = None  # type: ignore[assignment]
        info.submit_time = None  # type: ignore[assignment]

    assert store.modify("uqt_mod", unset) == store.get("uqt_mod")
    assert store.get("uqt_mod").metadata == {}  # type: ignore[union-attr]


def test_modify_writes_nothing_when_the_change_fails(store: TaskStore) -> None:
    store.save(task("uqt_mod", metadata={"a": 1}))
    before = store.get("uqt_mod")

    def boom(info: TaskInfo) -> None:
        info.metadata["half"] = True
        raise RuntimeError("boom")

    def bad_payload(info: TaskInfo) -> None:
        info.result = {"x": object()}

    def rename(info: TaskInfo) -> None:
        info.task_id = "uqt_other"

    with pytest.raises(RuntimeError, match="boom"):
        store.modify("uqt_mod", boom)
    with pytest.raises(TypeError):
        store.modify("uqt_mod", bad_payload)
    with pytest.raises(ValueError, match="task's id"):
        store.modify("uqt_mod", rename)
    assert store.get("uqt_mod") == before
    assert store.get("uqt_other") is None


def test_modify_leaves_archived_tasks_alone(store: TaskStore) -> None:
    store.save(task("uqt_mod"))
    assert store.archive_task("uqt_mod")
    assert store.modify("uqt_mod", lambda info: None) is None
    assert store.get("uqt_mod") is None and store.get_archived("uqt_mod") is not None


@pytest.mark.sync_only  # a change cannot await: the async form is in test_async_store.py
def test_a_store_call_inside_a_change_is_refused_at_once(store: TaskStore) -> None:
    """Inside ``modify``'s change the task's row is locked: a store call there would
    wait on its own lock (on servers, for ever). It is refused, and nothing is written."""
    store.save(task("uqt_mod", metadata={"a": 1}))
    calls = [
        lambda: store.save(task("uqt_mod", metadata={"a": 2})),
        lambda: store.get("uqt_mod"),
        lambda: store.modify("uqt_mod", lambda info: None),
        lambda: store.delete("uqt_mod"),
        lambda: store.save_shard(TaskShard("uqt_mod", 0, "p-0", "b1")),
        lambda: store.count(),
    ]
    for call in calls:

        def change(info: TaskInfo, call: object = call) -> None:
            info.metadata["a"] = 3
            call()  # type: ignore[operator]

        with pytest.raises(StoreError, match="inside another store call"):
            store.modify("uqt_mod", change)
    found = store.get("uqt_mod")
    assert found is not None and found.metadata == {"a": 1} and store.get_shards("uqt_mod") == []
