"""Retention: ``purge_archived`` and ``archive_expired`` as sequences of atomic chunks,
on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, insert, text, update

from tests.poison import poisoned
from uniqc_store import PartialRunError, StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.repository import archive
from uniqc_store.schema.tables import archived_task_shards, archived_tasks


def ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat()


def archived(store: TaskStore, task_id: str, hours_ago: float, shards: int = 2) -> None:
    """An archived task with ``shards`` archived shards, archived ``hours_ago``."""
    store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
    store.save_shards(TaskShard(task_id, i, f"{task_id}-p{i}", "b") for i in range(shards))
    assert store.archive_task(task_id)
    set_archived_at(store, task_id, ago(hours_ago))


def set_archived_at(store: TaskStore, task_id: str, value: str) -> None:
    with store.engine.begin() as conn:
        table = archived_tasks
        conn.execute(update(table).where(table.c.task_id == task_id).values(archived_at=value))


def archived_ids(store: TaskStore) -> list[str]:
    return sorted(t.task_id for t in store.iter_archived())


def archived_shard_count(store: TaskStore) -> int:
    with store.reading() as conn:
        return int(conn.execute(text("SELECT count(*) FROM archived_task_shards")).scalar_one())


def test_purge_deletes_old_archived_tasks_and_their_shards(store: TaskStore) -> None:
    for name, hours in (("uqt_old1", 100), ("uqt_old2", 80), ("uqt_new", 10)):
        archived(store, name, hours)
    store.save(TaskInfo(task_id="uqt_live", backend="b", status="success"))
    store.save_shard(TaskShard("uqt_live", 0, "live-p0", "b"))

    report = store.purge_archived(older_than_hours=72)
    assert (report.tasks, report.shards, report.batches) == (2, 4, 1)
    assert report.task_ids == ["uqt_old1", "uqt_old2"] and report.ids_complete
    assert (report.older_than_hours, report.keep_last, report.dry_run) == (72.0, 0, False)
    assert archived_ids(store) == ["uqt_new"]
    assert store.get_archived_shards("uqt_old1") == [] and archived_shard_count(store) == 2
    assert store.get("uqt_live") is not None and len(store.get_shards("uqt_live")) == 1
    assert store.purge_archived(older_than_hours=72).tasks == 0


def test_purge_keeps_the_newest_archived_tasks(store: TaskStore) -> None:
    for i, hours in enumerate((500, 400, 300, 200, 100)):
        archived(store, f"uqt_{i}", hours, shards=1)
    report = store.purge_archived(older_than_hours=50, keep_last=2)
    assert report.task_ids == ["uqt_0", "uqt_1", "uqt_2"] and report.shards == 3
    assert archived_ids(store) == ["uqt_3", "uqt_4"]
    # keep_last counts every archived task, also the ones too young to purge
    archived(store, "uqt_young", 1, shards=1)
    assert store.purge_archived(older_than_hours=50, keep_last=2).task_ids == ["uqt_3"]
    assert store.purge_archived(older_than_hours=0, keep_last=5).tasks == 0  # fewer than 5


def test_purge_in_batches_and_dry_run(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(7):
        archived(store, f"uqt_{i}", 100, shards=1)
    seen: list[int] = []
    dry = store.purge_archived(older_than_hours=1, batch_size=3, dry_run=True, progress=seen.append)
    assert (dry.tasks, dry.shards, dry.dry_run) == (7, 7, True) and seen == [3, 3, 1]
    assert len(archived_ids(store)) == 7  # nothing deleted
    monkeypatch.setattr(archive, "MAX_REPORTED_IDS", 4)
    report = store.purge_archived(older_than_hours=1, batch_size=3)
    assert (report.tasks, report.shards, report.batches) == (7, 7, 3)
    assert report.task_ids == [f"uqt_{i}" for i in range(4)] and not report.ids_complete
    assert archived_ids(store) == [] and archived_shard_count(store) == 0
    assert report.as_dict()["tasks"] == 7


def test_purge_never_deletes_an_unreadable_archived_at(store: TaskStore) -> None:
    archived(store, "uqt_garbage", 100)
    set_archived_at(store, "uqt_garbage", "last week")
    archived(store, "uqt_zulu", 100)
    set_archived_at(store, "uqt_zulu", ago(100).replace("+00:00", "Z"))
    assert store.purge_archived(older_than_hours=1).task_ids == ["uqt_zulu"]
    assert archived_ids(store) == ["uqt_garbage"]


@contextmanager
def no_sql(store: TaskStore) -> Iterator[None]:
    """Fail if a statement runs inside (a listener also takes the store off its
    direct path, so every statement is seen)."""
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        yield
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert statements == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"older_than_hours": -1}, ValueError),
        ({"older_than_hours": "72"}, ValueError),
        ({"older_than_hours": True}, ValueError),
        ({"older_than_hours": 1e6}, ValueError),
        ({"older_than_hours": 1, "keep_last": -1}, ValueError),
        ({"older_than_hours": 1, "keep_last": 1.5}, TypeError),
        ({"older_than_hours": 1, "batch_size": 0}, ValueError),
        ({"older_than_hours": 1, "batch_size": 10**6}, ValueError),
        ({"older_than_hours": 1, "batch_size": "10"}, TypeError),
        ({"older_than_hours": 1, "dry_run": 1}, TypeError),
        ({"older_than_hours": 1, "progress": 5}, TypeError),
    ],
)
def test_purge_arguments_are_checked_before_any_sql(
    store: TaskStore, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    archived(store, "uqt_1", 100)
    with no_sql(store), pytest.raises(error):
        store.purge_archived(**kwargs)
    assert archived_ids(store) == ["uqt_1"]


def test_archive_expired_error_part_way_reports_what_was_moved(
    store: TaskStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of two, in id order: the third chunk fails whole, the first two stay moved."""
    monkeypatch.setattr(archive, "CHUNK", 2)
    ids = [f"uqt_a{i}" for i in range(5)] + ["uqt_poison"]
    for task_id in ids:
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-p0", "b"))
    poison = poisoned(store, backend, "INSERT", "uqt_poison")
    with poison, pytest.raises(PartialRunError, match="part-way") as caught:
        store.archive_expired(hours=0)
    report = caught.value.report
    assert isinstance(report, dict) and isinstance(caught.value.__cause__, StoreError)
    assert report["archived"] == ids[:4] and report["count"] == 4
    assert archived_ids(store) == ids[:4]
    for task_id in ids[4:]:  # the failing chunk moved nothing
        assert store.get(task_id) is not None and len(store.get_shards(task_id)) == 1
    assert store.archive_expired(hours=0)["archived"] == ids[4:]  # run again: goes on


def test_archive_expired_error_in_the_first_chunk_is_the_error_itself(
    store: TaskStore, backend: str
) -> None:
    store.save(TaskInfo(task_id="uqt_poison", backend="b", status="success"))
    with poisoned(store, backend, "INSERT", "uqt_poison"), pytest.raises(StoreError) as caught:
        store.archive_expired(hours=0)
    assert not isinstance(caught.value, PartialRunError)
    assert store.get("uqt_poison") is not None and store.count_archived() == 0


def test_purge_error_part_way_reports_what_was_deleted(store: TaskStore, backend: str) -> None:
    ids = [f"uqt_a{i}" for i in range(5)] + ["uqt_poison"]
    for task_id in ids:
        archived(store, task_id, 100, shards=1)
    poison = poisoned(store, backend, "DELETE", "uqt_poison")
    with poison, pytest.raises(PartialRunError) as caught:
        store.purge_archived(older_than_hours=1, batch_size=2)
    report = caught.value.report
    assert isinstance(report, archive.PurgeReport)
    assert (report.tasks, report.shards, report.task_ids) == (4, 4, ids[:4])
    assert archived_ids(store) == ids[4:]  # the failing batch deleted nothing
    assert len(store.get_archived_shards("uqt_a4")) == 1


def test_orphan_archived_shards_are_left_to_check_rows(store: TaskStore) -> None:
    """Purge deletes the shards of the tasks it deletes, nothing else."""
    archived(store, "uqt_old", 100)
    with store.engine.begin() as conn:
        conn.execute(
            insert(archived_task_shards),
            {
                "uniqc_task_id": "uqt_orphan",
                "shard_index": 0,
                "platform_task_id": "x",
                "backend": "b",
                "status": "success",
                "submit_time": ago(100),
                "update_time": ago(100),
                "archived_at": ago(100),
            },
        )
    assert store.purge_archived(older_than_hours=1).shards == 2
    assert archived_shard_count(store) == 1
