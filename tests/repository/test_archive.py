"""The archive: moves, conflicts, expiry, and the ArchiveStore facade, on every engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text, update

from uniqc_store import ArchiveStore, TaskConflictError, TaskInfo, TaskShard, TaskStore
from uniqc_store.schema.tables import tasks


def ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat()


def seed(store: TaskStore, task_id: str, status: str = "success", shards: int = 2) -> TaskInfo:
    info = TaskInfo(
        task_id=task_id,
        backend="b",
        status=status,
        result={"r": task_id},
        metadata={"m": 1},
        error_message="e",
        shots=7,
    )
    store.save(info)
    store.save_shards(
        TaskShard(task_id, i, f"{task_id}-p{i}", "b", result=[i], status=status)
        for i in range(shards)
    )
    return info


def set_update_time(store: TaskStore, task_id: str, value: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(update_time=value))


def test_archive_and_restore_round_trip(store: TaskStore) -> None:
    info = seed(store, "uqt_1")
    shards = store.get_shards("uqt_1")
    assert store.archive_task("uqt_1") is True
    assert store.get("uqt_1") is None and store.get_shards("uqt_1") == []
    archived = store.get_archived("uqt_1")
    assert archived is not None and archived.archived_at is not None
    assert {**archived.to_dict(), "archived_at": None} == info.to_dict()
    archived_shards = store.get_archived_shards("uqt_1")
    assert archived_shards == shards
    assert store.count_archived() == 1 and store.count_archived(status="failed") == 0
    assert store.archive_task("uqt_1") is False
    assert store.restore_task("uqt_1") is True
    assert store.get("uqt_1") == info
    assert store.get_shards("uqt_1") == shards
    assert store.get_archived("uqt_1") is None and store.get_archived_shards("uqt_1") == []
    assert store.restore_task("uqt_1") is False


def test_conflicts_raise_and_move_nothing(store: TaskStore) -> None:
    seed(store, "uqt_1")
    store.archive_task("uqt_1")
    seed(store, "uqt_1", status="running", shards=1)  # a live task with the same id again
    with pytest.raises(TaskConflictError, match="already in the archive"):
        store.archive_task("uqt_1")
    with pytest.raises(TaskConflictError, match="exists as a live task"):
        store.restore_task("uqt_1")
    assert store.get("uqt_1").status == "running"  # type: ignore[union-attr]
    assert len(store.get_shards("uqt_1")) == 1
    assert store.get_archived("uqt_1").status == "success"  # type: ignore[union-attr]
    assert len(store.get_archived_shards("uqt_1")) == 2


def test_list_and_delete_archived(store: TaskStore) -> None:
    for i in range(4):
        seed(store, f"uqt_{i}", status="failed" if i % 2 else "success")
        set_update_time(store, f"uqt_{i}", ago(1))
        store.archive_task(f"uqt_{i}")
    listed = store.list_archived()
    assert len(listed) == 4 and all(t.archived_at for t in listed)
    assert [t.task_id for t in store.list_archived(status="failed")] == ["uqt_3", "uqt_1"]
    assert len(store.list_archived(limit=1, offset=3)) == 1
    assert store.delete_archived("uqt_3") is True
    assert store.delete_archived("uqt_3") is False
    assert store.get_archived_shards("uqt_3") == []
    with store.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM archived_task_shards")).scalar_one()
    assert left == 6
    assert sum(1 for _ in store.iter_archived(batch_size=2)) == 3


def test_archive_expired(store: TaskStore) -> None:
    seed(store, "uqt_old_done")
    seed(store, "uqt_old_failed", status="failed")
    seed(store, "uqt_old_running", status="running")
    seed(store, "uqt_new_done")
    seed(store, "uqt_zulu")
    seed(store, "uqt_offset")
    seed(store, "uqt_garbage")
    for task_id in ("uqt_old_done", "uqt_old_failed", "uqt_old_running"):
        set_update_time(store, task_id, ago(100))
    set_update_time(store, "uqt_zulu", ago(100).replace("+00:00", "Z"))
    old_local = datetime.now(timezone(timedelta(hours=8))) - timedelta(hours=80)
    set_update_time(store, "uqt_offset", old_local.isoformat())
    set_update_time(store, "uqt_garbage", "yesterday")

    outcome = store.archive_expired(hours=72)
    assert sorted(outcome["archived"]) == [
        "uqt_offset",
        "uqt_old_done",
        "uqt_old_failed",
        "uqt_zulu",
    ]
    assert outcome["count"] == 4 and outcome["skipped_running"] == ["uqt_old_running"]
    assert outcome["hours"] == 72 and outcome["terminal_only"] is True
    assert sorted(t.task_id for t in store.list()) == [
        "uqt_garbage",
        "uqt_new_done",
        "uqt_old_running",
    ]
    assert len(store.get_archived_shards("uqt_old_done")) == 2

    everything = store.archive_expired(hours=50, terminal_only=False)
    assert everything["archived"] == ["uqt_old_running"] and everything["skipped_running"] == []
    with pytest.raises(ValueError, match="hours"):
        store.archive_expired(hours=-1)


def test_archive_expired_skips_ids_already_archived(store: TaskStore) -> None:
    seed(store, "uqt_1")
    store.archive_task("uqt_1")
    seed(store, "uqt_1")
    set_update_time(store, "uqt_1", ago(100))
    outcome = store.archive_expired()
    assert outcome["archived"] == [] and outcome["skipped_conflicts"] == ["uqt_1"]
    assert store.get("uqt_1") is not None


def test_archive_store_facade(store: TaskStore) -> None:
    archive = ArchiveStore(store)
    seed(store, "uqt_1")
    set_update_time(store, "uqt_1", ago(200))
    assert archive.archive_expired()["archived"] == ["uqt_1"]
    assert archive.count_archived(backend="b") == 1
    assert archive.get_archived("uqt_1") is not None
    assert [t.task_id for t in archive.list_archived()] == ["uqt_1"]
    assert len(archive.get_archived_shards("uqt_1")) == 2
    assert archive.restore_task("uqt_1") and archive.archive_task("uqt_1")
    assert archive.delete_archived("uqt_1") and archive.count_archived() == 0
