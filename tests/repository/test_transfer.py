"""Export reads a range of task ids at a time, each range in a short snapshot of its
own: every row once, each task exactly once while moves run, and (SQLite) a WAL
that stays bounded while writers work beside a long export."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.db.sqlite import JOURNAL_SIZE_LIMIT
from uniqc_store.repository import transfer
from uniqc_store.schema.tables import archived_task_shards


def _lines(text: str) -> list[tuple[str, dict[str, object]]]:
    items = [json.loads(line) for line in text.splitlines()]
    return [(item["table"], item["row"]) for item in items]


def _fill(store: TaskStore, count: int) -> list[str]:
    """``count`` tasks with one shard each; the odd ones archived."""
    ids = [f"uqt_{i:03}" for i in range(count)]
    for i, task_id in enumerate(ids):
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-p0", "b"))
        if i % 2:
            assert store.archive_task(task_id)
    return ids


def test_export_in_ranges_writes_every_row_once(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges of three ids per task table; an archived shard without its task (another
    program's row) is in a range too."""
    monkeypatch.setattr(transfer, "BATCH", 3)
    ids = _fill(store, 11)
    store.save_shard(TaskShard("uqt_000", 1, "uqt_000-p1", "b"))
    with store.transaction() as conn:
        row = {"uniqc_task_id": "uqt_0055", "shard_index": 0, "platform_task_id": "o"}
        stamps = {"submit_time": "t", "update_time": "t", "archived_at": "t"}
        conn.execute(
            archived_task_shards.insert(), {**row, "backend": "b", "status": "x", **stamps}
        )
    out = io.StringIO()
    counts = transfer.export_jsonl(store, out)
    lines = _lines(out.getvalue())
    assert counts == {"tasks": 6, "task_shards": 7, "archived_tasks": 5, "archived_task_shards": 6}
    assert len(lines) == sum(counts.values()) == transfer.count_rows(store)
    keys = Counter(
        (table, row.get("task_id") or (row["uniqc_task_id"], row["shard_index"]))
        for table, row in lines
    )
    assert set(keys.values()) == {1}
    assert {row["task_id"] for table, row in lines if "task_id" in row} == set(ids)
    assert ("archived_task_shards", ("uqt_0055", 0)) in keys


def test_export_finds_each_task_exactly_once_while_moves_run(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every range, every task changes table (live ones archived, archived ones
    restored): each id is still exported once, with its own shard, in its table."""
    monkeypatch.setattr(transfer, "BATCH", 2)
    ids = _fill(store, 12)

    def swap_everything(_rows: int) -> None:
        live = {t.task_id for t in store.iter_tasks()}
        for task_id in ids:
            assert (store.archive_task if task_id in live else store.restore_task)(task_id)

    out = io.StringIO()
    transfer.export_jsonl(store, out, swap_everything)
    lines = _lines(out.getvalue())
    found = Counter(row["task_id"] for table, row in lines if table.endswith("tasks"))
    assert found == Counter(ids)
    where = {row["task_id"]: table for table, row in lines if table.endswith("tasks")}
    shards = {row["uniqc_task_id"]: table for table, row in lines if table.endswith("shards")}
    assert {t: where[t].replace("tasks", "task_shards") for t in ids} == shards


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


#: What the ``-wal`` file may reach while writers work beside the export: SQLite's
#: automatic checkpoint comes at 1,000 pages (4 MiB); twice that leaves room for
#: the transaction that crosses it. A read transaction held for the whole export
#: let it grow with every write instead (measured: 46 MB in this test, 4 MB now).
WAL_BOUND = 8 * 1024 * 1024


def test_the_wal_stays_bounded_while_an_export_runs_beside_writers(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    with TaskStore(url=f"sqlite:///{path}") as seeding:
        seeding.save_many(TaskInfo(task_id=f"uqt_{i:05}", backend="b") for i in range(20_000))
    assert _wal_bytes(path) == 0  # closed: the last connection removes the file
    reader, writer = TaskStore(url=f"sqlite:///{path}"), TaskStore(url=f"sqlite:///{path}")
    largest = 0
    writes = 0

    def write_beside(_rows: int) -> None:  # runs between the export's reads
        nonlocal largest, writes
        for _ in range(100):
            writes += 1
            writer.save(TaskInfo(task_id=f"uqt_w{writes:05}", backend="b", metadata={"n": writes}))
            largest = max(largest, _wal_bytes(path))

    try:
        with open(os.devnull, "w", encoding="utf-8") as out:
            counts = transfer.export_jsonl(reader, out, write_beside)
    finally:
        reader.close()
        writer.close()
    assert counts["tasks"] >= 20_000 and writes >= 2_000
    assert 0 < largest <= WAL_BOUND < JOURNAL_SIZE_LIMIT
