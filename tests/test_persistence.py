"""The legacy dict API (``TaskPersistence``), on every engine."""

from __future__ import annotations

from pathlib import Path

from uniqc_store import TaskPersistence, TaskStore


def test_cache_dir_is_the_reference_layout(tmp_path: Path) -> None:
    p = TaskPersistence(tmp_path)
    assert p.tasks_file == tmp_path / "tasks.sqlite" and p.cache_dir == tmp_path
    p.save("task-1", "originq", "running")
    assert TaskStore(tmp_path).get("task-1") is not None


def test_legacy_dict_api(store: TaskStore) -> None:
    p = TaskPersistence(store=store)
    p.save(
        "task-1",
        "originq",
        "running",
        shots=500,
        submit_time="2024-01-01T00:00:00+00:00",
        circuit="bell",
        job={"n": 2},
    )
    p.save("task-2", "quafu", "success", result={"counts": {"00": 1}})
    p.save("task-3", "originq", "pending")
    record = p.load("task-1")
    assert record is not None
    assert record["platform"] == "originq" and record["shots"] == 500
    assert record["circuit"] == "bell" and record["job"] == {"n": 2}
    assert record["submit_time"] == "2024-01-01T00:00:00+00:00"
    assert p.load("nope") is None

    assert p.update("task-1", status="success", result={"x": 1}, extra="kept") is True
    record = p.load("task-1")
    assert record is not None
    assert (record["status"], record["result"], record["circuit"], record["extra"]) == (
        "success",
        {"x": 1},
        "bell",
        "kept",
    )
    assert p.update("nope", status="failed") is False

    p.upsert("task-3", "originq", "running", attempt=2)
    p.upsert("task-4", "ibm", "pending")
    assert p.load("task-3")["attempt"] == 2  # type: ignore[index]
    assert {r["task_id"] for r in p.list_by_platform("originq")} == {"task-1", "task-3"}
    assert {r["task_id"] for r in p.list_pending()} == {"task-3", "task-4"}
    assert len(p.list_all()) == 4 and p.count() == 4 and p.count(platform="ibm") == 1
    assert p.clear_completed() == 2
    assert p.delete("task-3") is True and p.delete("task-3") is False
    assert [r["task_id"] for r in p.list_all()] == ["task-4"]

    info = store.get("task-4")
    assert info is not None and info.backend == "ibm"
