"""Arguments are checked before any SQL, the same way on every engine.

MySQL compares ``'uqt_...' = 0`` as true, so an unchecked ``delete(0)`` deleted
every task there and nothing elsewhere: that test runs on every engine. The checks
themselves are Python's, made before the engine is reached, so the tests of every call
and bad value are ``one_engine`` (SQLite, through ``TaskStore`` and ``AsyncTaskStore``);
the range checks stay on every engine (``modify`` reads the row first, and they are the
engines' own limits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from uniqc_store import TaskInfo, TaskShard, TaskStore

BAD_KEYS: list[Any] = [0, 1, 1.5, True, b"uqt_1", ["uqt_1"], {"uqt_1": 1}, object()]
UNSTORABLE = ["uqt_\x00", "uqt_\udc80"]

#: Every public call taking an id, a backend or a platform id, with the bad value put in.
CALLS: dict[str, Callable[[TaskStore, Any], Any]] = {
    "get": lambda s, v: s.get(v),
    "delete": lambda s, v: s.delete(v),
    "get_shards": lambda s, v: s.get_shards(v),
    "delete_shards": lambda s, v: s.delete_shards(v),
    "get_shard_by_platform_id": lambda s, v: s.get_shard_by_platform_id(v),
    "get_shard_by_platform_id(backend=)": lambda s, v: s.get_shard_by_platform_id("p", backend=v),
    "find_uniqc_id_by_platform_id": lambda s, v: s.find_uniqc_id_by_platform_id(v),
    "find_uniqc_id(backend=)": lambda s, v: s.find_uniqc_id_by_platform_id("p", backend=v),
    "archive_task": lambda s, v: s.archive_task(v),
    "restore_task": lambda s, v: s.restore_task(v),
    "get_archived": lambda s, v: s.get_archived(v),
    "get_archived_shards": lambda s, v: s.get_archived_shards(v),
    "delete_archived": lambda s, v: s.delete_archived(v),
    "count(backend=)": lambda s, v: s.count(backend=v),
    "count_archived(backend=)": lambda s, v: s.count_archived(backend=v),
    "list(backend=)": lambda s, v: s.list(backend=v),
    "list_archived(backend=)": lambda s, v: s.list_archived(backend=v),
    "iter_tasks(backend=)": lambda s, v: list(s.iter_tasks(backend=v)),
    "count(status=)": lambda s, v: s.count(status=v),
    "list(status=)": lambda s, v: s.list(status=v),
    "clear_completed": lambda s, v: s.clear_completed([v]),
    "archive_expired(terminal_only=)": lambda s, v: s.archive_expired(0, terminal_only=v),
    "list_page(backend=)": lambda s, v: s.list_page(backend=v),
    "list_archived_page(status=)": lambda s, v: s.list_archived_page(status=v),
    "archive_many": lambda s, v: s.archive_many(["uqt_0", v]),
    "delete_many": lambda s, v: s.delete_many(["uqt_0", v]),
}


def _fill(store: TaskStore) -> tuple[int, int, int]:
    for i in range(3):
        store.save(TaskInfo(task_id=f"uqt_{i}", backend="b", status="success"))
        store.save_shard(TaskShard(f"uqt_{i}", 0, f"p{i}", "b"))
    store.save(TaskInfo(task_id="uqt_9", backend="b"))
    store.archive_task("uqt_9")
    return _state(store)


def _state(store: TaskStore) -> tuple[int, int, int]:
    shards = sum(len(store.get_shards(f"uqt_{i}")) for i in range(3))
    return store.count(), store.count_archived(), shards


@pytest.mark.one_engine
@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_wrong_types_are_refused_before_any_sql(store: TaskStore, call: str) -> None:
    before = _fill(store)
    for value in BAD_KEYS:
        if call == "archive_expired(terminal_only=)" and isinstance(value, bool):
            continue  # a bool is the right type there
        with pytest.raises(TypeError):
            CALLS[call](store, value)
    assert _state(store) == before


@pytest.mark.one_engine
@pytest.mark.parametrize("call", list(CALLS)[:18], ids=list(CALLS)[:18])
def test_unstorable_text_is_refused_before_any_sql(store: TaskStore, call: str) -> None:
    """NUL (PostgreSQL cannot hold it) and lone surrogates (no driver encodes them)."""
    before = _fill(store)
    for value in UNSTORABLE:
        with pytest.raises(ValueError, match=r"NUL|surrogate"):
            CALLS[call](store, value)
    assert _state(store) == before


def test_delete_zero_deletes_nothing(store: TaskStore) -> None:
    before = _fill(store)
    with pytest.raises(TypeError, match="task_id must be a string"):
        store.delete(0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.get(0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.count(backend=0)  # type: ignore[arg-type]
    assert _state(store) == before


#: Values every engine stores or refuses alike: INTEGER columns (and LIMIT / OFFSET binds)
#: are 32-bit on PostgreSQL and MySQL, key columns VARCHAR(255) on MySQL; SQLite would take
#: more, and is held to them.
OUT_OF_RANGE: dict[str, Callable[[TaskStore], Any]] = {
    "shots=2**31": lambda s: s.save(TaskInfo(task_id="uqt_x", backend="b", shots=2**31)),
    "shots=-2**31-1": lambda s: s.save(TaskInfo(task_id="uqt_x", backend="b", shots=-(2**31) - 1)),
    "shots=2**63": lambda s: s.save(TaskInfo(task_id="uqt_x", backend="b", shots=2**63)),
    "task_id of 256": lambda s: s.save(TaskInfo(task_id="u" * 256, backend="b")),
    "backend of 256": lambda s: s.save(TaskInfo(task_id="uqt_x", backend="b" * 256)),
    "submit_time of 256": lambda s: s.save(
        TaskInfo(task_id="uqt_x", backend="b", submit_time="2" * 256)
    ),
    "shard_index=2**31": lambda s: s.save_shard(TaskShard("uqt_0", 2**31, "p", "b")),
    "circuit_count=2**40": lambda s: s.save_shard(
        TaskShard("uqt_0", 1, "p", "b", circuit_count=2**40)
    ),
    "platform_task_id of 256": lambda s: s.save_shard(TaskShard("uqt_0", 1, "p" * 256, "b")),
    "shard backend of 256": lambda s: s.save_shard(TaskShard("uqt_0", 1, "p", "b" * 256)),
    "list(limit=2**31)": lambda s: s.list(limit=2**31),
    "list(offset=2**63)": lambda s: s.list(offset=2**63),
    "iter_tasks(batch_size=2**31)": lambda s: list(s.iter_tasks(batch_size=2**31)),
    "list_page(limit=2**31)": lambda s: s.list_page(limit=2**31),
    "modify to shots=2**31": lambda s: s.modify("uqt_0", lambda i: setattr(i, "shots", 2**31)),
}


@pytest.mark.parametrize("call", list(OUT_OF_RANGE), ids=list(OUT_OF_RANGE))
def test_values_out_of_every_engines_range_are_refused_alike(store: TaskStore, call: str) -> None:
    before = _fill(store)
    with pytest.raises(ValueError, match=r"between|at most"):
        OUT_OF_RANGE[call](store)
    assert _state(store) == before and store.get("uqt_x") is None


def test_the_largest_values_every_engine_holds_round_trip(store: TaskStore) -> None:
    store.save(TaskInfo(task_id="u" * 255, backend="b" * 255, shots=2**31 - 1))
    store.save_shard(TaskShard("u" * 255, 2**31 - 1, "p" * 255, "b" * 255, circuit_count=-(2**31)))
    found = store.get("u" * 255)
    assert found is not None and found.shots == 2**31 - 1 and found.backend == "b" * 255
    (shard,) = store.get_shards("u" * 255)
    assert (shard.shard_index, shard.circuit_count) == (2**31 - 1, -(2**31))
    assert store.list(limit=2**31 - 1, offset=2**31 - 1) == []


@pytest.mark.one_engine
@pytest.mark.parametrize("method", ["iter_tasks", "iter_archived"])
@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"batch_size": -1}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"batch_size": "10"}, TypeError),
        ({"status": "nope"}, ValueError),
        ({"backend": 3}, TypeError),
    ],
)
def test_walks_check_their_arguments_when_called(
    store: TaskStore, method: str, arguments: dict[str, object], error: type[Exception]
) -> None:
    """A bad argument to a walk is an error at the call, not at the first ``next()``
    (before, ``iter_tasks(batch_size=-1)`` returned a generator that raised later)."""
    with pytest.raises(error):
        getattr(store, method)(**arguments)
