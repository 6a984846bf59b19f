"""The legacy dict API (``TaskPersistence``), on every engine."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from uniqc_store import TaskInfo, TaskPersistence, TaskStore


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


# -- drop-in exactness: the reference's record shape, key for key --------------
#
# The reference builds a record as ``task_id, platform, status, result,
# submit_time, update_time``, then ``shots`` only when it is not 0, then the
# metadata keys in their order, which never override those (``setdefault``); an
# ``error_message`` keyword is a metadata key like any other. The expected dicts
# below are written out from that rule, not computed by our code.

T0 = "2024-01-01T00:00:00+00:00"
T1 = "2024-02-02T00:00:00+00:00"
CORE_ORDER = ["task_id", "platform", "status", "result", "submit_time", "update_time"]


def test_a_bare_record_has_no_shots_and_no_error_message(store: TaskStore) -> None:
    p = TaskPersistence(store=store)
    p.save("task-1", "originq", "running", submit_time=T0)
    record = p.load("task-1")
    assert record is not None
    assert list(record) == CORE_ORDER
    assert record == {
        "task_id": "task-1",
        "platform": "originq",
        "status": "running",
        "result": None,
        "submit_time": T0,
        "update_time": record["update_time"],
    }
    assert isinstance(record["update_time"], str) and record["update_time"] > T0
    assert p.list_all() == [record]


def test_shots_error_message_and_metadata_come_in_the_reference_order(store: TaskStore) -> None:
    p = TaskPersistence(store=store)
    p.save(
        "task-1",
        "originq",
        "failed",
        {"counts": {"00": 1}},
        shots=1000,
        submit_time=T0,
        circuit="bell",
        error_message="calibration expired",
        job={"n": 2},
    )
    record = p.load("task-1")
    assert record is not None
    assert list(record) == [*CORE_ORDER, "shots", "circuit", "error_message", "job"]
    assert record == {
        "task_id": "task-1",
        "platform": "originq",
        "status": "failed",
        "result": {"counts": {"00": 1}},
        "submit_time": T0,
        "update_time": record["update_time"],
        "shots": 1000,
        "circuit": "bell",
        "error_message": "calibration expired",
        "job": {"n": 2},
    }
    # a saved error text is also the task's error_message (what the API and dashboard
    # show); the keyword stays metadata where it was given, as the reference keeps it
    info = store.get("task-1")
    assert info is not None and info.error_message == "calibration expired"
    assert list(info.metadata.items()) == [
        ("circuit", "bell"),
        ("error_message", "calibration expired"),
        ("job", {"n": 2}),
    ]


def test_reserved_keys_win_over_metadata_keys(store: TaskStore) -> None:
    """Metadata written by other code may hold core names: the record keeps the task's."""
    store.save(
        TaskInfo(
            task_id="task-1",
            backend="quafu",
            status="success",
            shots=0,
            submit_time=T0,
            metadata={"status": "fake", "platform": "fake", "shots": 7, "note": "n"},
        )
    )
    p = TaskPersistence(store=store)
    record = p.load("task-1")
    assert record is not None
    # shots is 0, so the task has no ``shots`` key and the metadata's fills it (setdefault)
    assert list(record) == [*CORE_ORDER, "shots", "note"]
    assert (record["status"], record["platform"], record["shots"]) == ("success", "quafu", 7)
    # and a round trip through update loses none of the metadata
    assert p.update(**record) is True
    info = store.get("task-1")
    assert info is not None
    assert info.metadata == {"status": "fake", "platform": "fake", "shots": 7, "note": "n"}
    assert info.shots == 7  # the record's ``shots`` was given back as shots, as in the reference


def test_an_error_message_that_is_not_text_stays_metadata(store: TaskStore) -> None:
    """The reference keeps any ``error_message`` keyword as metadata: None and dicts too."""
    p = TaskPersistence(store=store)
    p.save("task-1", "ibm", "failed", submit_time=T0, error_message=None)
    p.save("task-2", "ibm", "failed", submit_time=T0, error_message={"code": 7})
    one, two = p.load("task-1"), p.load("task-2")
    assert one is not None and two is not None
    assert list(one) == [*CORE_ORDER, "error_message"] and one["error_message"] is None
    assert list(two) == [*CORE_ORDER, "error_message"] and two["error_message"] == {"code": 7}
    # text replaces it (and is also the task's error_message); None then stands as given
    assert p.update("task-2", error_message="boom") is True
    assert p.load("task-2") == {**two, "update_time": ANY_TIME, "error_message": "boom"}
    assert store.get("task-2").error_message == "boom"  # type: ignore[union-attr]
    assert store.get("task-2").metadata == {"error_message": "boom"}  # type: ignore[union-attr]
    assert p.update("task-2", error_message=None) is True
    assert p.load("task-2") == {**two, "update_time": ANY_TIME, "error_message": None}
    assert store.get("task-2").error_message is None  # type: ignore[union-attr]


def the_references_record(path: Path, task_id: str) -> dict[str, object]:
    """What the reference's ``TaskPersistence.load`` returns for a row of the file, by its
    own rule (core fields, ``shots`` when not 0, then the metadata keys), read with sqlite3."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    record: dict[str, object] = {
        "task_id": row["task_id"],
        "platform": row["backend"],
        "status": row["status"],
        "result": json.loads(row["result_json"]) if row["result_json"] else None,
        "submit_time": row["submit_time"],
        "update_time": row["update_time"],
    }
    if row["shots"]:
        record["shots"] = row["shots"]
    for key, value in json.loads(row["metadata_json"] or "{}").items():
        record.setdefault(key, value)
    return record


@pytest.mark.parametrize(
    "keywords",
    [
        {"circuit": "bell", "error_message": "calibration expired", "job": {"n": 2}},
        {"error_message": "first", "circuit": "bell"},
        {"circuit": "bell", "error_message": None},
        {"shots": 3, "a": 1, "error_message": {"code": 7}, "b": 2},
    ],
)
def test_records_are_the_references_key_for_key_in_its_order(
    tmp_path: Path, keywords: dict[str, object]
) -> None:
    """Saved through us, loaded by us and by the reference's rule from the same file:
    one record, keys in one order (the reference store reads our database, CONTRACT)."""
    p = TaskPersistence(tmp_path)
    p.save("task-1", "originq", "failed", {"r": 1}, submit_time=T0, **keywords)
    assert p.update("task-1", later=True) is True
    ours = p.load("task-1")
    p.store.close()
    theirs = the_references_record(tmp_path / "tasks.sqlite", "task-1")
    assert ours is not None and list(ours.items()) == list(theirs.items())


def test_an_error_message_saved_through_the_store_is_shown(store: TaskStore) -> None:
    store.save(TaskInfo("task-1", "ibm", "failed", shots=5, submit_time=T0, error_message="x"))
    record = TaskPersistence(store=store).load("task-1")
    assert record is not None and list(record) == [*CORE_ORDER, "shots", "error_message"]
    assert (record["shots"], record["error_message"]) == (5, "x")


class _AnyTime(str):
    """Equal to any ISO-8601 timestamp (``update_time`` is the time of the write)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other[:2] == "20" and "T" in other

    __hash__ = str.__hash__


ANY_TIME = _AnyTime("<any time>")


@pytest.mark.parametrize("how", ["save", "update", "upsert"])
def test_round_trips_neither_lose_nor_invent_keys(store: TaskStore, how: str) -> None:
    p = TaskPersistence(store=store)
    p.save("bare", "originq", "pending", submit_time=T0)
    p.save("full", "quafu", "failed", {"x": 1}, shots=3, submit_time=T0, error_message="e", a=1)
    p.save("none", "ibm", "failed", submit_time=T0, error_message=None, b=[1, 2])
    before = {r["task_id"]: r for r in p.list_all()}
    for record in before.values():
        if how == "save":
            p.save(**record)
        elif how == "update":
            assert p.update(**record) is True
        else:
            p.upsert(**record)
    after = {r["task_id"]: r for r in p.list_all()}
    for task_id, record in before.items():
        assert list(after[task_id]) == list(record), (how, task_id)
        assert after[task_id] == {**record, "update_time": ANY_TIME}, (how, task_id)
    assert list(before["bare"]) == CORE_ORDER
    assert list(before["full"]) == [*CORE_ORDER, "shots", "error_message", "a"]  # as given
    assert list(before["none"]) == [*CORE_ORDER, "error_message", "b"]


def test_update_and_upsert_as_the_reference_does(store: TaskStore) -> None:
    p = TaskPersistence(store=store)
    p.save("task-1", "originq", "running", submit_time=T0, circuit="bell")
    assert p.update("task-1", status="success", shots=10, submit_time=T1, extra="kept")
    # submit_time: the reference's store keeps an existing row's, whatever is passed
    assert p.load("task-1") == {
        "task_id": "task-1",
        "platform": "originq",
        "status": "success",
        "result": None,
        "submit_time": T0,
        "update_time": ANY_TIME,
        "shots": 10,
        "circuit": "bell",
        "extra": "kept",
    }
    # an existing record keeps its platform through upsert (the reference passes only
    # status, result and the keywords on); a missing one is saved with it
    p.upsert("task-1", "ibm", "failed", {"r": 1}, attempt=2)
    p.upsert("task-2", "ibm", "pending", submit_time=T0)
    assert p.load("task-1") == {
        "task_id": "task-1",
        "platform": "originq",
        "status": "failed",
        "result": {"r": 1},
        "submit_time": T0,
        "update_time": ANY_TIME,
        "shots": 10,
        "circuit": "bell",
        "extra": "kept",
        "attempt": 2,
    }
    assert p.load("task-2") == {
        "task_id": "task-2",
        "platform": "ibm",
        "status": "pending",
        "result": None,
        "submit_time": T0,
        "update_time": ANY_TIME,
    }
    assert [r["task_id"] for r in p.list_all(limit=1)] == ["task-2"]
