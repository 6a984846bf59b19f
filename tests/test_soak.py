"""A randomized soak: eight processes mixing every operation on a few shared ids.

Each process logs every call it made (what, on which id, when it started and
ended, what it returned). At the end the logs and the database must agree:

- no call ended in anything but a result, ``TaskConflictError`` or
  ``MissingParentTaskError``;
- every acknowledged save and shard is still there (live or archived) unless a
  delete that could have come after it returned True;
- two deletes of one id that both returned True had a re-creation between them;
- no archived shard lacks its task, and the counts agree with the rows.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from uniqc_store import (
    MissingParentTaskError,
    TaskConflictError,
    TaskInfo,
    TaskShard,
    TaskStore,
)

from .race_tools import orphan_archived_shards, shard_markers, task_markers

PROCESSES = 8
SECONDS = 3.0
IDS = [f"uqt_soak_{k}" for k in range(16)]
DOCUMENTED = (TaskConflictError, MissingParentTaskError)
#: Operations and their weights.
OPERATIONS = {
    "save": 30,
    "save_shard": 30,
    "archive": 12,
    "restore": 12,
    "delete": 5,
    "delete_archived": 4,
    "archive_expired": 1,
    "get": 6,
}


@dataclass(frozen=True)
class Call:
    """One logged call: ``result`` is its return value or the name of what it raised."""

    op: str
    task_id: str
    value: Any
    start: int
    end: int
    result: Any
    acknowledged: bool


def _call(store: TaskStore, op: str, task_id: str, value: Any) -> Any:
    if op == "save":
        return store.save(TaskInfo(task_id, "b", status="success", metadata={"marker": value}))
    if op == "save_shard":
        index, marker = value
        return store.save_shard(TaskShard(task_id, index, marker, "b"))
    if op == "archive":
        return store.archive_task(task_id)
    if op == "restore":
        return store.restore_task(task_id)
    if op == "delete":
        return store.delete(task_id)
    if op == "delete_archived":
        return store.delete_archived(task_id)
    if op == "archive_expired":
        return sorted(store.archive_expired(0, terminal_only=False)["archived"])
    return store.get(task_id) is not None


def worker(url: str, number: int, ready: Any) -> list[Call]:
    """Mix operations on the shared ids for ``SECONDS``; return the log."""
    rng = random.Random(number)
    store = TaskStore(url=url)
    log: list[Call] = []
    ops, weights = list(OPERATIONS), list(OPERATIONS.values())
    ready.wait(120)  # every process has its store open: start together
    deadline = time.monotonic() + SECONDS
    try:
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            op, task_id = rng.choices(ops, weights)[0], rng.choice(IDS)
            value: Any = f"{number}:{seq}"
            if op == "save_shard":
                value = (number * 1_000_000 + seq, value)
            began = time.time_ns()
            try:
                result, acknowledged = _call(store, op, task_id, value), True
            except DOCUMENTED as exc:
                result, acknowledged = type(exc).__name__, False
            except Exception as exc:  # an undocumented outcome: logged and failed on
                result, acknowledged = f"UNEXPECTED {exc!r}", False
            log.append(Call(op, task_id, value, began, time.time_ns(), result, acknowledged))
    finally:
        store.close()
    return log


def _overlaps_or_follows(other: Call, call: Call) -> bool:
    """Whether ``other`` could have taken effect after ``call`` did."""
    return other.end > call.start


def _destroyed(calls: list[Call], call: Call) -> bool:
    """Whether an acknowledged delete that could come after ``call`` removed a row."""
    return any(
        c.op in ("delete", "delete_archived") and c.result is True and _overlaps_or_follows(c, call)
        for c in calls
    )


def _check(store: TaskStore, logs: list[list[Call]]) -> None:
    calls = [c for log in logs for c in log]
    unexpected = [c for c in calls if isinstance(c.result, str) and c.result.startswith("UNEX")]
    assert unexpected == []
    by_id: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_id[c.task_id].append(c)
    for task_id, mine in by_id.items():
        saves = [c for c in mine if c.op == "save" and c.acknowledged]
        for save in saves:
            superseded = any(s is not save and _overlaps_or_follows(s, save) for s in saves)
            if not superseded and not _destroyed(mine, save):
                assert save.value in task_markers(store, task_id), f"lost save {save}"
        markers = shard_markers(store, task_id)
        for shard in (c for c in mine if c.op == "save_shard" and c.acknowledged):
            if not _destroyed(mine, shard):
                assert shard.value[1] in markers, f"lost shard {shard}"
        _check_single_deletes(mine)
    assert orphan_archived_shards(store) == 0
    assert store.count() == len(list(store.iter_tasks()))
    assert store.count_archived() == len(list(store.iter_archived()))


def _end(call: Call) -> int:
    return call.end


def _check_single_deletes(calls: list[Call]) -> None:
    """Two deletes that both removed the task need a re-creation between them."""
    deletes = sorted((c for c in calls if c.op == "delete" and c.result is True), key=_end)
    creations = [c for c in calls if c.acknowledged and c.op in ("save", "restore")]
    for first, second in itertools.pairwise(deletes):
        assert any(
            c.end > first.start and c.start < second.end and (c.op == "save" or c.result is True)
            for c in creations
        ), f"deleted twice without a re-creation: {first} / {second}"


@pytest.mark.slow
def test_mixed_workload_of_eight_processes_loses_nothing(store: TaskStore) -> None:
    url = store.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context) as pool,
    ):
        ready = manager.Barrier(PROCESSES)
        futures = [pool.submit(worker, url, n, ready) for n in range(PROCESSES)]
        logs = [f.result(timeout=300) for f in futures]
    assert sum(len(log) for log in logs) > 100  # the workload really ran
    moves = [c for log in logs for c in log if c.op in ("archive", "restore")]
    assert any(c.result is True for c in moves)
    _check(store, logs)
