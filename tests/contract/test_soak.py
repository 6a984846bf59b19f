"""A randomized soak: eight processes mixing every operation on one database.

Each process saves new tasks of its own and works on sixteen shared ids and on
the recent new ids of every process: saves, shards, archives, restores,
deletes, deletes of archived tasks, ``archive_expired(hours=0)`` and reads.
Each logs every call it made (what, on which id, when it started and ended,
what it returned). At the end the logs and the database must agree:

- no call ended in anything but a result, ``TaskConflictError`` or
  ``MissingParentTaskError``;
- every acknowledged save and shard is still there (live or archived) unless a
  delete that could have come after it returned True;
- two deletes of one id that both returned True had a re-creation between them;
- no archived shard lacks its task, and the counts agree with the rows.

CI runs it once for ``SECONDS``. For the long form (the issue's figures: 30 s,
30 runs in a row, on one engine) set ``UNIQC_SOAK_SECONDS`` and ``UNIQC_SOAK_RUNS``:

    UNIQC_SOAK_SECONDS=30 UNIQC_SOAK_RUNS=30 python -m pytest tests/contract/test_soak.py \
        -m slow -k postgresql -s

Each run prints one line of figures (calls, acknowledged, moves, losses); the
test fails after the last run if any run lost anything.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import URL, select

from tests.race_tools import orphan_archived_shards
from uniqc_store import (
    DatabaseBusyError,
    MissingParentTaskError,
    TaskConflictError,
    TaskInfo,
    TaskShard,
    TaskStore,
)
from uniqc_store.schema.tables import archived_task_shards, task_shards

pytestmark = pytest.mark.one_path  # the workers open their own stores

PROCESSES = 8
SECONDS = float(os.environ.get("UNIQC_SOAK_SECONDS", "3.0"))
RUNS = int(os.environ.get("UNIQC_SOAK_RUNS", "1"))
IDS = [f"uqt_soak_{k}" for k in range(16)]
#: How many of a process's newest tasks the others pick from.
RECENT = 8
DOCUMENTED = (TaskConflictError, MissingParentTaskError)
#: On a Galera cluster, also: ``archive_expired`` (one transaction over every expired
#: task) that lost certification to writers on other nodes on all of its attempts
#: raises DatabaseBusyError, nothing written (docs/production.md, "Galera").
ON_A_CLUSTER: dict[str, type[Exception]] = {"archive_expired": DatabaseBusyError}
#: Operations and their weights ("new": save a task under a new id of this process).
OPERATIONS = {
    "new": 8,
    "save": 22,
    "save_shard": 30,
    "archive": 12,
    "restore": 12,
    "delete": 5,
    "delete_archived": 5,
    "archive_expired": 1,
    "get": 6,
}
#: Each process's count of new tasks, shared (set in each worker by ``_share``).
_newest: Any = None


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


def _share(newest: Any) -> None:
    global _newest
    _newest = newest


def new_id(number: int, k: int) -> str:
    return f"uqt_soak_{number}_{k}"


def _pick(rng: random.Random) -> str:
    """A shared id, or one of the recent new ids of any process (its own included)."""
    number = rng.randrange(PROCESSES)
    made = _newest[number]
    if made == 0 or rng.random() < 0.5:
        return rng.choice(IDS)
    return new_id(number, rng.randint(max(1, made - RECENT + 1), made))


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


def worker(url: str, number: int, ready: Any, seed: int, cluster: bool = False) -> list[Call]:
    """Mix operations on the shared and the recent ids for ``SECONDS``; return the log
    (``cluster``: the outcomes of ``ON_A_CLUSTER`` are documented too)."""
    rng = random.Random(seed * PROCESSES + number)
    store = TaskStore(url=url)
    log: list[Call] = []
    ops, weights = list(OPERATIONS), list(OPERATIONS.values())
    ready.wait(120)  # every process has its store open: start together
    deadline = time.monotonic() + SECONDS
    made = 0
    try:
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            op = rng.choices(ops, weights)[0]
            value: Any = f"{number}:{seq}"
            if op == "new":
                op, task_id = "save", new_id(number, made + 1)
            else:
                task_id = _pick(rng)
            if op == "save_shard":
                value = (number * 1_000_000 + seq, value)
            began = time.time_ns()
            try:
                result, acknowledged = _call(store, op, task_id, value), True
            except DOCUMENTED as exc:
                result, acknowledged = type(exc).__name__, False
            except Exception as exc:  # an undocumented outcome (but ON_A_CLUSTER) is failed on
                expected = cluster and isinstance(exc, ON_A_CLUSTER.get(op, ()))
                result = type(exc).__name__ if expected else f"UNEXPECTED {exc!r}"
                acknowledged = False
            log.append(Call(op, task_id, value, began, time.time_ns(), result, acknowledged))
            if task_id == new_id(number, made + 1):
                made += 1
                _newest[number] = made  # the others may pick it from now on
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


@dataclass
class Contents:
    """What the database holds at the end: task markers and shard markers by id."""

    tasks: dict[str, set[Any]]
    shards: dict[str, set[str]]

    @classmethod
    def read(cls, store: TaskStore) -> Contents:
        tasks: dict[str, set[Any]] = defaultdict(set)
        for info in itertools.chain(store.iter_tasks(), store.iter_archived()):
            tasks[info.task_id].add(info.metadata.get("marker"))
        shards: dict[str, set[str]] = defaultdict(set)
        with store.session() as session:
            for table in (task_shards, archived_task_shards):
                rows = session.execute(select(table.c.uniqc_task_id, table.c.platform_task_id))
                for task_id, platform_task_id in rows:
                    shards[task_id].add(platform_task_id)
        return cls(tasks, shards)


def _check(store: TaskStore, logs: list[list[Call]]) -> list[str]:
    """Every way the database disagrees with the logs (empty: nothing lost)."""
    calls = [c for log in logs for c in log]
    problems = [f"unexpected {c}" for c in calls if str(c.result).startswith("UNEXPECTED")]
    by_id: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_id[c.task_id].append(c)
    found = Contents.read(store)
    for task_id, mine in by_id.items():
        saves = [c for c in mine if c.op == "save" and c.acknowledged]
        for save in saves:
            superseded = any(s is not save and _overlaps_or_follows(s, save) for s in saves)
            kept = superseded or _destroyed(mine, save) or save.value in found.tasks[task_id]
            if not kept:
                problems.append(f"lost save {save}")
        for shard in (c for c in mine if c.op == "save_shard" and c.acknowledged):
            if not _destroyed(mine, shard) and shard.value[1] not in found.shards[task_id]:
                problems.append(f"lost shard {shard}")
        problems += _double_deletes(mine)
    if orphans := orphan_archived_shards(store):
        problems.append(f"{orphans} archived shards without their task")
    if store.count() != len(list(store.iter_tasks())):
        problems.append("count() disagrees with the rows")
    if store.count_archived() != len(list(store.iter_archived())):
        problems.append("count_archived() disagrees with the rows")
    return problems


def _end(call: Call) -> int:
    return call.end


def _between(c: Call, earlier: Call, later: Call) -> bool:
    """Whether ``c`` could take effect after ``earlier`` took effect and before ``later`` did."""
    return c.end > earlier.start and c.start < later.end and earlier.start < later.end


def _double_deletes(calls: list[Call]) -> list[str]:
    """Two deletes that both removed the task need a re-creation between them (in either
    order when the two overlapped: the one that ended first need not have acted first)."""
    deletes = sorted((c for c in calls if c.op == "delete" and c.result is True), key=_end)
    creations = [
        c
        for c in calls
        if c.acknowledged and (c.op == "save" or (c.op == "restore" and c.result is True))
    ]
    return [
        f"deleted twice without a re-creation: {first} / {second}"
        for first, second in itertools.pairwise(deletes)
        if not any(_between(c, first, second) or _between(c, second, first) for c in creations)
    ]


def figures(logs: list[list[Call]], problems: list[str]) -> str:
    """One line per run: what ran and what was lost."""
    calls = [c for log in logs for c in log]
    moved = sum(1 for c in calls if c.op in ("archive", "restore") and c.result is True)
    removed = sum(1 for c in calls if c.op in ("delete", "delete_archived") and c.result is True)
    lost = sum(1 for p in problems if p.startswith("lost"))
    busy = sum(1 for c in calls if c.result == "DatabaseBusyError")
    return (
        f"{len(calls)} calls, {sum(c.acknowledged for c in calls)} acknowledged, "
        f"{moved} moves, {removed} deletes, {busy} busy, {lost} lost, {len(problems)} problems"
    )


@pytest.mark.slow
def test_mixed_workload_of_eight_processes_loses_nothing(
    store: TaskStore, backend: str, node_urls: list[URL]
) -> None:
    """``RUNS`` soaks of ``SECONDS`` each, on the emptied database, one after the other;
    on a cluster the processes write to its nodes in turn (process n to node n mod 3)."""
    urls = [u.render_as_string(hide_password=False) for u in node_urls]
    context = multiprocessing.get_context("spawn")
    newest = context.Array("i", PROCESSES)
    seed = random.randrange(1_000_000)
    failed: list[str] = []
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(
            max_workers=PROCESSES, mp_context=context, initializer=_share, initargs=(newest,)
        ) as pool,
    ):
        ready = manager.Barrier(PROCESSES)
        for run in range(1, RUNS + 1):
            newest[:] = [0] * PROCESSES
            futures = [
                pool.submit(worker, urls[n % len(urls)], n, ready, seed + run, len(urls) > 1)
                for n in range(PROCESSES)
            ]
            logs = [f.result(timeout=SECONDS + 300) for f in futures]
            assert sum(len(log) for log in logs) > 100  # the workload really ran
            moves = [c for log in logs for c in log if c.op in ("archive", "restore")]
            assert any(c.result is True for c in moves)
            problems = _check(store, logs)
            print(
                f"soak {backend} on {len(urls)} node(s) run {run}/{RUNS} "
                f"({SECONDS:g} s, seed {seed + run}): {figures(logs, problems)}"
            )
            failed += [f"run {run}: {p}" for p in problems]
            store.clear_all()
    assert failed == [], "\n".join(failed[:20])
