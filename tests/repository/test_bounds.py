"""The store's bounds at their edges (``schema/validation.py``): ids of 255 characters
are stored and 256 refused, ages in hours from 0 to below ``MAX_HOURS``, payloads
``MAX_JSON_DEPTH`` deep. A refused call is a ``ValueError`` that runs no SQL, so
nothing is written. The checks run before any SQL, so one engine (SQLite) is enough:
that every engine agrees on the check is ``tests/contract/test_arguments.py``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.repository.test_retention import no_sql
from uniqc_store import TaskInfo, TaskShard, TaskStore

#: The documented bounds, spelled out (not read from the code, so a changed bound fails here).
MAX_KEY_LENGTH, MAX_HOURS, MAX_JSON_DEPTH = 255, 1e6, 100

LONGEST, TOO_LONG = MAX_KEY_LENGTH, MAX_KEY_LENGTH + 1


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[TaskStore]:
    with TaskStore(tmp_path) as store:
        yield store


def _task(**fields: Any) -> TaskInfo:
    return TaskInfo(**{"task_id": "uqt_1", "backend": "b", **fields})


def _shard(**fields: Any) -> TaskShard:
    defaults = {"uniqc_task_id": "uqt_1", "shard_index": 0, "platform_task_id": "p", "backend": "b"}
    return TaskShard(**{**defaults, **fields})


#: Each key a record stores, and how to build a record whose key is ``n`` characters
#: (a shard's parent is saved first: ``parent`` gives its id).
KEYS: dict[str, tuple[Callable[[int], TaskInfo | TaskShard], Callable[[int], str]]] = {
    "task_id": (lambda n: _task(task_id="t" * n), lambda n: ""),
    "TaskInfo.backend": (lambda n: _task(backend="b" * n), lambda n: ""),
    "TaskInfo.submit_time": (lambda n: _task(submit_time="2" * n), lambda n: ""),
    "uniqc_task_id": (lambda n: _shard(uniqc_task_id="u" * n), lambda n: "u" * n),
    "platform_task_id": (lambda n: _shard(platform_task_id="p" * n), lambda n: "uqt_1"),
    "TaskShard.backend": (lambda n: _shard(backend="b" * n), lambda n: "uqt_1"),
}


def _save(store: TaskStore, record: TaskInfo | TaskShard) -> None:
    if isinstance(record, TaskShard):
        store.save_shard(record)
    else:
        store.save(record)


def _written(store: TaskStore) -> tuple[int, int]:
    shards = sum(len(store.get_shards(t.task_id)) for t in store.list())
    return store.count(), shards


@pytest.mark.parametrize("key", list(KEYS))
def test_a_key_of_255_characters_is_stored_and_256_refused(
    sqlite_store: TaskStore, key: str
) -> None:
    build, parent = KEYS[key]
    if parent(LONGEST):  # the longest shard's task (a longer one is refused first)
        sqlite_store.save(_task(task_id=parent(LONGEST)))
    before = _written(sqlite_store)
    with no_sql(sqlite_store), pytest.raises(ValueError, match="at most 255 characters, not 256"):
        _save(sqlite_store, build(TOO_LONG))
    assert _written(sqlite_store) == before
    record = build(LONGEST)
    _save(sqlite_store, record)
    if isinstance(record, TaskShard):
        stored: Any = sqlite_store.get_shards(record.uniqc_task_id)[0]
    else:
        stored = sqlite_store.get(record.task_id)
    assert stored is not None
    attribute = key.rsplit(".", 1)[-1]
    assert getattr(stored, attribute) == getattr(record, attribute)
    assert len(getattr(stored, attribute)) == LONGEST


def test_an_id_looked_up_has_no_bound_it_finds_nothing(sqlite_store: TaskStore) -> None:
    """A key a call looks up may be longer than any stored one: it matches nothing
    (the REST API refuses it with a 422 before the store sees it)."""
    sqlite_store.save(_task())
    assert sqlite_store.get("t" * TOO_LONG) is None
    assert sqlite_store.get_shards("t" * TOO_LONG) == []
    assert sqlite_store.count(backend="b" * TOO_LONG) == 0


#: Each call taking an age in hours, with the age put in.
AGES: dict[str, Callable[[TaskStore, Any], Any]] = {
    "archive_expired": lambda s, h: s.archive_expired(h, terminal_only=False),
    "expired_task_ids": lambda s, h: s.expired_task_ids(h, terminal_only=False),
    "purge_archived": lambda s, h: s.purge_archived(older_than_hours=h),
}
BELOW_MAX = math.nextafter(MAX_HOURS, 0)


@pytest.mark.parametrize("call", list(AGES))
def test_hours_from_0_to_below_max_hours(sqlite_store: TaskStore, call: str) -> None:
    sqlite_store.save(_task(task_id="uqt_live", status="success"))
    sqlite_store.save(_task(task_id="uqt_archived", status="success"))
    sqlite_store.archive_task("uqt_archived")
    for refused in (MAX_HOURS, math.nextafter(0.0, -1), math.inf, math.nan):
        with no_sql(sqlite_store), pytest.raises(ValueError, match="from 0 to 1e\\+06"):
            AGES[call](sqlite_store, refused)
    assert sqlite_store.count() == 1 and sqlite_store.count_archived() == 1
    AGES[call](sqlite_store, BELOW_MAX)  # a century and more: nothing that old
    assert sqlite_store.count() == 1 and sqlite_store.count_archived() == 1
    AGES[call](sqlite_store, 0)  # everything is older than now
    live, archived = {
        "archive_expired": (0, 2),
        "expired_task_ids": (1, 1),
        "purge_archived": (1, 0),
    }[call]
    assert (sqlite_store.count(), sqlite_store.count_archived()) == (live, archived)


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("payload", ["result", "metadata"])
def test_payloads_max_json_depth_deep_are_stored_and_one_more_refused(
    sqlite_store: TaskStore, payload: str
) -> None:
    with no_sql(sqlite_store), pytest.raises(ValueError, match="more than 100 levels deep"):
        sqlite_store.save(_task(**{payload: {"a": nested(MAX_JSON_DEPTH)}}))
    assert sqlite_store.count() == 0
    sqlite_store.save(_task(**{payload: {"a": nested(MAX_JSON_DEPTH - 1)}}))
    stored = sqlite_store.get("uqt_1")
    assert stored is not None
    assert getattr(stored, payload) == {"a": nested(MAX_JSON_DEPTH - 1)}
