"""``archive_many`` / ``delete_many`` on every engine: the same outcome as one call per
id, set-based (a few statements per 100 ids), atomic per chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, insert

from tests.poison import poisoned
from tests.race_tools import race
from uniqc_store import (
    PartialRunError,
    StoreError,
    TaskConflictError,
    TaskInfo,
    TaskShard,
    TaskStore,
)
from uniqc_store.repository import archive
from uniqc_store.schema.tables import archived_tasks


def scenario(store: TaskStore) -> list[str]:
    """Live tasks with shards, archived ones, ids both live and archived, unknown ids and
    repeats, over more than two chunks of 100: the ids to pass, in their order."""
    live = [f"uqt_l{i:03d}" for i in range(230)]
    store.save_many(TaskInfo(t, "b", "success") for t in live)
    store.save_shards(TaskShard(t, i, f"{t}-p{i}", "b") for t in live[:40] for i in range(2))
    for task_id in live[200:215]:  # archived only
        assert store.archive_task(task_id)
    for task_id in live[215:]:  # archived, then live again under the same id: a conflict
        assert store.archive_task(task_id)
        store.save(TaskInfo(task_id, "b", "running"))
    unknown = [f"uqt_u{i}" for i in range(12)]
    ids = live[:100] + unknown[:6] + live[100:] + unknown[6:]
    repeats = [live[3], unknown[0], live[220], live[150], live[205]]
    return ids + repeats + ids[:20]  # repeats, some across chunks


def contents(store: TaskStore) -> dict[str, Any]:
    """Where every task and shard is (ids, statuses and shard platform ids)."""
    return {
        "live": sorted((t.task_id, t.status) for t in store.iter_tasks()),
        "archived": sorted((t.task_id, t.status) for t in store.iter_archived()),
        "shards": sorted(
            (t.task_id, s.platform_task_id)
            for t in store.iter_tasks()
            for s in store.get_shards(t.task_id)
        ),
        "archived_shards": sorted(
            (t.task_id, s.platform_task_id)
            for t in store.iter_archived()
            for s in store.get_archived_shards(t.task_id)
        ),
    }


def archive_one_by_one(store: TaskStore, ids: list[str]) -> dict[str, list[str]]:
    """What the bulk-archive route did before: ``archive_task`` on each id in turn."""
    outcome: dict[str, list[str]] = {"archived": [], "missing": [], "conflicts": []}
    for task_id in ids:
        try:
            outcome["archived" if store.archive_task(task_id) else "missing"].append(task_id)
        except TaskConflictError:
            outcome["conflicts"].append(task_id)
    return outcome


def delete_one_by_one(store: TaskStore, ids: list[str]) -> dict[str, list[str]]:
    """What the bulk-delete route did before: ``delete`` on each id in turn."""
    deleted = [t for t in ids if store.delete(t)]
    return {"deleted": deleted, "missing": [t for t in ids if t not in set(deleted)]}


@pytest.mark.parametrize(
    ("many", "one_by_one"),
    [("archive_many", archive_one_by_one), ("delete_many", delete_one_by_one)],
)
def test_the_same_outcome_as_one_call_per_id(
    store: TaskStore, many: str, one_by_one: Callable[[TaskStore, list[str]], Any]
) -> None:
    ids = scenario(store)
    expected = one_by_one(store, ids)
    expected_contents = contents(store)
    store.clear_all()
    assert scenario(store) == ids
    assert getattr(store, many)(ids) == expected
    assert contents(store) == expected_contents
    assert all(expected.values())  # every kind of outcome was reached


@pytest.mark.one_path
def test_set_based_a_few_statements_per_chunk(store: TaskStore) -> None:
    ids = [f"uqt_{i:03d}" for i in range(250)]
    store.save_many(TaskInfo(t, "b", "success") for t in ids)
    store.save_shards(TaskShard(t, 0, f"{t}-p", "b") for t in ids)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        sql = args[2].lstrip()
        if sql.split()[0] in ("SELECT", "INSERT", "UPDATE", "DELETE") and "SELECT 1" not in sql:
            statements.append(sql)  # the calls' own, not the statistics' upkeep

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert len(store.archive_many(ids[:200])["archived"]) == 200
        archived_with = len(statements)
        assert len(store.delete_many(ids)["deleted"]) == 50
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    # two chunks: lock, (lock shards: servers), find archived, copy tasks, copy shards, delete
    assert archived_with <= 2 * 6, statements[:archived_with]
    # three chunks of lock + delete (the first two find nothing left to delete)
    assert len(statements) - archived_with <= 3 * 2, statements[archived_with:]
    assert store.count() == 0 and store.count_archived() == 200
    assert len(store.get_archived_shards(ids[0])) == 1


@pytest.mark.parametrize("many", ["archive_many", "delete_many"])
def test_every_id_is_checked_before_any_sql(store: TaskStore, many: str) -> None:
    store.save(TaskInfo("uqt_1", "b"))
    call = getattr(store, many)
    for bad, error in [
        ("uqt_1", TypeError),  # a string is not a list of ids
        (None, TypeError),
        (5, TypeError),
        (["uqt_1", 5], TypeError),
        (["uqt_1", b"uqt_2"], TypeError),
        (["uqt_1", "uqt_\x00"], ValueError),
    ]:
        with pytest.raises(error, match="task_ids"):
            call(bad)
    assert store.get("uqt_1") is not None  # nothing was done
    assert call(iter([])) == (
        {"archived": [], "missing": [], "conflicts": []}
        if many == "archive_many"
        else {"deleted": [], "missing": []}
    )
    assert call(t for t in ["uqt_1"])[many.split("_")[0] + "d"] == ["uqt_1"]


@pytest.mark.parametrize(
    ("many", "timing", "table", "done", "missing"),
    [
        # the shards' copy: on SQLite a trigger's refusal of the tasks' copy would read as
        # a key clash, i.e. a conflict of that id (as archive_task reports it)
        ("archive_many", "INSERT", "archived_task_shards", "archived", ["uqt_nope", "uqt_a0"]),
        ("delete_many", "DELETE", "tasks", "deleted", ["uqt_nope"]),
    ],
)
def test_an_error_part_way_reports_the_chunks_committed(
    store: TaskStore,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    many: str,
    timing: str,
    table: str,
    done: str,
    missing: list[str],
) -> None:
    """Chunks of two distinct ids: the third fails whole, the first two stay done (and
    are reported as usual: a repeat of an archived id is missing, of a deleted one in
    neither list)."""
    monkeypatch.setattr(archive, "CHUNK", 2)
    ids = ["uqt_a0", "uqt_a1", "uqt_a2", "uqt_poison", "uqt_a3", "uqt_a4"]
    for task_id in ids:
        store.save(TaskInfo(task_id, "b", "success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-p0", "b"))
    call = getattr(store, many)
    given = ["uqt_a0", "uqt_nope", "uqt_a1", "uqt_a2", "uqt_a0", *ids[3:]]
    column = "uniqc_task_id" if table.endswith("shards") else "task_id"
    with poisoned(store, backend, timing, "uqt_poison", table, column):
        with pytest.raises(PartialRunError, match=f"{many} stopped part-way") as caught:
            call(given)  # chunks: (a0, nope), (a1, a2), (poison, a3): fails, (a4)
        report = caught.value.report
        assert isinstance(caught.value.__cause__, StoreError)
        assert report[done] == ids[:3] and report["missing"] == missing
        for task_id in ids[3:]:  # the failing chunk changed nothing, the next never ran
            assert store.get(task_id) is not None and len(store.get_shards(task_id)) == 1
        assert store.count() == 3
        with pytest.raises(StoreError) as first:  # an error in the first chunk: as it is
            call(["uqt_poison"])
        assert not isinstance(first.value, PartialRunError)
    assert call(ids)[done] == ids[3:]  # run again: goes on


@pytest.mark.sync_only  # pauses the sync store's own statements (race_tools)
def test_an_archived_copy_written_meanwhile_is_a_conflict_of_that_id_only(
    store: TaskStore,
) -> None:
    """Another program writes an archived copy of one id after the chunk looked for one:
    the chunk's copy clashes and moves nothing, then the chunk goes id by id."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite's chunk holds the database's write lock: no writer gets in")
    ids = ["uqt_1", "uqt_2", "uqt_3"]
    store.save_many(TaskInfo(t, "b", "success") for t in ids)

    def other_program() -> None:
        with store.engine.begin() as conn:
            row = {"task_id": "uqt_2", "backend": "b", "status": "success", "shots": 0}
            stamps = {"submit_time": "x", "update_time": "x", "archived_at": "x"}
            conn.execute(insert(archived_tasks), {**row, **stamps, "metadata_json": "{}"})

    # after the chunk's lock, its shards' lock and its look for archived copies
    raced = race(store, lambda: store.archive_many(ids), other_program, 3)
    assert raced is not None
    moved, other = raced
    assert other.error is None and moved.error is None, (moved.error, other.error)
    assert moved.value == {"archived": ["uqt_1", "uqt_3"], "missing": [], "conflicts": ["uqt_2"]}
    assert store.get("uqt_2") is not None and store.get_archived("uqt_2").update_time == "x"  # type: ignore[union-attr]


@pytest.mark.sync_only  # pauses the sync store's own statements (race_tools)
@pytest.mark.parametrize("many", ["delete_many", "archive_many"])
def test_a_chunk_racing_archive_task_takes_each_task_once(store: TaskStore, many: str) -> None:
    """The chunk's first lock is on the live rows, as ``archive_task``'s: paused just
    after it, an ``archive_task`` of one of its ids waits, then finds no live task."""
    store.save_many(TaskInfo(t, "b", "success") for t in ("uqt_1", "uqt_2"))
    store.save_shard(TaskShard("uqt_1", 0, "p-1", "b"))
    after_lock = 2 if store.dialect == "sqlite" else 1  # SQLite's BEGIN IMMEDIATE first
    raced = race(
        store,
        lambda: getattr(store, many)(["uqt_1", "uqt_2"]),
        lambda: store.archive_task("uqt_1"),
        after_lock,
    )
    assert raced is not None
    bulk, single = raced
    assert bulk.error is None and single.error is None, (bulk.error, single.error)
    done = "deleted" if many == "delete_many" else "archived"
    assert bulk.value[done] == ["uqt_1", "uqt_2"] and single.value is False
    assert store.get("uqt_1") is None and store.get_shards("uqt_1") == []
    archived = store.get_archived_shards("uqt_1")
    assert [s.platform_task_id for s in archived] == ([] if many == "delete_many" else ["p-1"])
