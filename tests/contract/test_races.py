"""Two calls racing on one task, made deterministic: the first (a move) is paused
after each of its statements in turn and the second runs in that gap.

Whatever the interleaving, on every engine: a call that returned normally is
durable (found in the live or the archived tables), conflicting calls end in
their documented outcomes only (a result, ``TaskConflictError`` or
``MissingParentTaskError``), and no archived shard is left without its task.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import URL, Engine, create_engine, insert, update

from tests.race_tools import (
    Outcome,
    orphan_archived_shards,
    race,
    race_paused,
    shard_markers,
    task_markers,
)
from uniqc_store import (
    MissingParentTaskError,
    TaskConflictError,
    TaskInfo,
    TaskPersistence,
    TaskShard,
    TaskStore,
)
from uniqc_store.records import utc_now_iso
from uniqc_store.schema.tables import archived_task_shards, archived_tasks
from uniqc_store.schema.values import shard_to_row

pytestmark = pytest.mark.one_path  # these watch the engine themselves

#: A move has at most this many statements (BEGIN included); the loop stops earlier.
MAX_STATEMENTS = 12
_ids = itertools.count()


@pytest.fixture
def other(module_url: URL, store: TaskStore) -> Iterator[TaskStore]:
    """A second store on the same database (its own connections), for the racing call."""
    second = TaskStore(url=module_url)
    try:
        yield second
    finally:
        second.close()


def new_task(store: TaskStore, *, archived: bool = False, shards: int = 1) -> str:
    task_id = f"uqt_race_{next(_ids)}"
    store.save(TaskInfo(task_id=task_id, backend="b", status="success", metadata={"marker": 0}))
    for index in range(shards):
        store.save_shard(TaskShard(task_id, index, f"{task_id}-p{index}", "b"))
    if archived:
        assert store.archive_task(task_id)
    return task_id


def acknowledged(outcome: Outcome, *allowed: type[BaseException]) -> bool:
    """Whether the call returned normally; an error it raised must be one of ``allowed``."""
    if outcome.error is None:
        return True
    assert isinstance(outcome.error, allowed), f"undocumented outcome: {outcome.error!r}"
    return False


Call = Callable[[Any], Any]


def every_gap(
    store: TaskStore, setup: Callable[[], Any], move: Call, other: Call
) -> Iterator[tuple[Any, Outcome, Outcome]]:
    """Race ``other`` against ``move`` in every gap between the move's statements."""
    for n in range(1, MAX_STATEMENTS + 1):
        state = setup()
        raced = race(store, functools.partial(move, state), functools.partial(other, state), n)
        if raced is None:
            return
        yield state, *raced
        assert orphan_archived_shards(store) == 0
    raise AssertionError("the move has more statements than MAX_STATEMENTS")


def every_interleaving(
    store: TaskStore,
    theirs_on: Engine,
    setup: Callable[[], Any],
    mine: Call,
    theirs: Call,
    *,
    orphans_allowed: bool = False,
) -> Iterator[tuple[Any, Outcome, Outcome]]:
    """``mine`` (on ``store``) and ``theirs`` (on the engine ``theirs_on``), in both orders: the one
    that starts first paused after each of its statements in turn, the other started
    in that gap and paused after each of its own in turn while the first finishes
    (the last round of each lets it run to the end). Yields (state, mine, theirs)."""
    calls = [(store.engine, mine), (theirs_on, theirs)]
    for first, second in (calls, calls[::-1]):
        for state, one, two in _paused_pairs(setup, first, second, orphans_allowed, store):
            yield (state, one, two) if first is calls[0] else (state, two, one)


def _paused_pairs(
    setup: Callable[[], Any],
    first: tuple[Engine, Call],
    second: tuple[Engine, Call],
    orphans_allowed: bool,
    store: TaskStore,
) -> Iterator[tuple[Any, Outcome, Outcome]]:
    for n in range(1, MAX_STATEMENTS + 1):
        for m in range(1, MAX_STATEMENTS + 2):
            state = setup()
            raced = race_paused(
                first[0],
                functools.partial(first[1], state),
                second[0],
                functools.partial(second[1], state),
                n,
                m,
            )
            if raced is None:
                return
            yield state, raced.first, raced.second
            assert orphans_allowed or orphan_archived_shards(store) == 0
            if not raced.second_paused:
                break
        else:
            raise AssertionError("the racing call has more statements than MAX_STATEMENTS")
    raise AssertionError("the first call has more statements than MAX_STATEMENTS")


def shard_set(shards: list[TaskShard]) -> set[str]:
    return {s.platform_task_id for s in shards}


def assert_rows(
    store: TaskStore, task_id: str, *, live: set[str] | None, archived: set[str] | None
) -> None:
    """Where the task is, with exactly which shards (None: absent, and no shards there)."""
    assert (store.get(task_id) is not None) is (live is not None)
    assert shard_set(store.get_shards(task_id)) == (live or set())
    assert (store.get_archived(task_id) is not None) is (archived is not None)
    assert shard_set(store.get_archived_shards(task_id)) == (archived or set())


def two_shards(store: TaskStore, *, archived: bool) -> tuple[str, set[str]]:
    task_id = new_task(store, archived=archived, shards=2)
    return task_id, {f"{task_id}-p0", f"{task_id}-p1"}


def test_new_shard_racing_archive_is_never_lost(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, saved in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.archive_task(t),
        lambda t: other.save_shard(TaskShard(t, 7, f"{t}-late", "b")),
    ):
        assert acknowledged(moved) and moved.value is True
        if acknowledged(saved, MissingParentTaskError):
            assert f"{task_id}-late" in shard_markers(store, task_id)
        assert f"{task_id}-p0" in shard_markers(store, task_id)


def test_shard_update_racing_archive_is_never_lost(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, saved in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.archive_task(t),
        lambda t: other.save_shard(TaskShard(t, 0, f"{t}-updated", "b")),
    ):
        assert acknowledged(moved) and moved.value is True
        markers = shard_markers(store, task_id)
        if acknowledged(saved, MissingParentTaskError):
            assert f"{task_id}-updated" in markers
        else:
            assert markers == {f"{task_id}-p0"}


def test_task_update_racing_archive_is_never_lost(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, saved in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.archive_task(t),
        lambda t: other.save(TaskInfo(task_id=t, backend="b", metadata={"marker": 1})),
    ):
        assert acknowledged(moved)
        assert acknowledged(saved)
        assert 1 in task_markers(store, task_id)


def test_restore_racing_restore_moves_once(store: TaskStore, other: TaskStore) -> None:
    for task_id, first, second in every_gap(
        store,
        lambda: new_task(store, archived=True),
        lambda t: store.restore_task(t),
        lambda t: other.restore_task(t),
    ):
        results = [o.value for o in (first, second) if acknowledged(o, TaskConflictError)]
        assert results.count(True) == 1
        assert store.get(task_id) is not None and store.get_archived(task_id) is None
        assert shard_markers(store, task_id) == {f"{task_id}-p0"}


def test_new_shard_racing_restore_is_never_lost(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, saved in every_gap(
        store,
        lambda: new_task(store, archived=True),
        lambda t: store.restore_task(t),
        lambda t: other.save_shard(TaskShard(t, 7, f"{t}-late", "b")),
    ):
        assert acknowledged(moved) and moved.value is True
        if acknowledged(saved, MissingParentTaskError):
            assert f"{task_id}-late" in {s.platform_task_id for s in store.get_shards(task_id)}


def test_save_racing_restore_is_never_lost(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, saved in every_gap(
        store,
        lambda: new_task(store, archived=True),
        lambda t: store.restore_task(t),
        lambda t: other.save(TaskInfo(task_id=t, backend="b", metadata={"marker": 1})),
    ):
        acknowledged(moved, TaskConflictError)
        assert acknowledged(saved)
        live = store.get(task_id)
        assert live is not None and live.metadata.get("marker") == 1


def test_delete_racing_archive_is_one_or_the_other(store: TaskStore, other: TaskStore) -> None:
    for task_id, moved, deleted in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.archive_task(t),
        lambda t: other.delete(t),
    ):
        assert acknowledged(moved) and acknowledged(deleted)
        assert [moved.value, deleted.value].count(True) == 1
        archived = store.get_archived(task_id) is not None
        assert archived is moved.value and store.get(task_id) is None


def test_archive_expired_racing_archive_reports_what_it_moved(
    store: TaskStore, other: TaskStore
) -> None:
    for ids, expired, moved in every_gap(
        store,
        lambda: [new_task(store) for _ in range(3)],
        lambda ids: store.archive_expired(hours=0, terminal_only=False),
        lambda ids: other.archive_task(ids[1]),
    ):
        assert acknowledged(expired) and acknowledged(moved, TaskConflictError)
        reported = set(expired.value["archived"]) & set(ids)
        by_other = {ids[1]} if moved.value is True else set()
        assert reported.isdisjoint(by_other)
        assert reported | by_other == set(ids)
        assert all(store.get_archived(t) is not None and store.get(t) is None for t in ids)


def test_archive_expired_racing_restore(store: TaskStore, other: TaskStore) -> None:
    for (live, archived), expired, restored in every_gap(
        store,
        lambda: (new_task(store), new_task(store, archived=True)),
        lambda ids: store.archive_expired(hours=0, terminal_only=False),
        lambda ids: other.restore_task(ids[1]),
    ):
        assert acknowledged(expired) and acknowledged(restored)
        assert live in expired.value["archived"]
        in_archive = store.get_archived(archived) is not None
        in_live = store.get(archived) is not None
        assert in_archive != in_live  # exactly one copy, never lost, never doubled
        assert shard_markers(store, archived) == {f"{archived}-p0"}


def test_archive_racing_delete_archived(store: TaskStore, other: TaskStore) -> None:
    """The soak's lost shards: a delete_archived that locked nothing (the archive not yet
    committed) must not go on to delete the shards the archive then committed."""
    for (task_id, shards), moved, deleted in every_interleaving(
        store,
        other.engine,
        lambda: two_shards(store, archived=False),
        lambda t: store.archive_task(t[0]),
        lambda t: other.delete_archived(t[0]),
    ):
        assert acknowledged(moved) and moved.value is True
        assert acknowledged(deleted)
        assert_rows(store, task_id, live=None, archived=None if deleted.value else shards)


def test_archive_racing_delete_of_an_older_archived_copy(
    store: TaskStore, other: TaskStore
) -> None:
    """The task is live and archived: the archive conflicts, or comes after the delete."""

    def setup() -> tuple[str, set[str]]:
        task_id, _ = two_shards(store, archived=True)
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-live", "b"))
        return task_id, {f"{task_id}-live"}

    for (task_id, shards), moved, deleted in every_interleaving(
        store,
        other.engine,
        setup,
        lambda t: store.archive_task(t[0]),
        lambda t: other.delete_archived(t[0]),
    ):
        assert acknowledged(deleted) and deleted.value is True
        if acknowledged(moved, TaskConflictError):
            assert moved.value is True
            assert_rows(store, task_id, live=None, archived=shards)
        else:
            assert_rows(store, task_id, live=shards, archived=None)


def test_restore_racing_archive_moves_it_there_and_maybe_back(
    store: TaskStore, other: TaskStore
) -> None:
    for (task_id, shards), restored, archived in every_interleaving(
        store,
        other.engine,
        lambda: two_shards(store, archived=True),
        lambda t: store.restore_task(t[0]),
        lambda t: other.archive_task(t[0]),
    ):
        assert acknowledged(restored) and restored.value is True
        assert acknowledged(archived)
        if archived.value:
            assert_rows(store, task_id, live=None, archived=shards)
        else:
            assert_rows(store, task_id, live=shards, archived=None)


def test_restore_racing_delete_archived_is_one_or_the_other(
    store: TaskStore, other: TaskStore
) -> None:
    for (task_id, shards), moved, deleted in every_interleaving(
        store,
        other.engine,
        lambda: two_shards(store, archived=True),
        lambda t: store.restore_task(t[0]),
        lambda t: other.delete_archived(t[0]),
    ):
        assert acknowledged(moved) and acknowledged(deleted)
        assert [moved.value, deleted.value].count(True) == 1
        assert_rows(store, task_id, live=shards if moved.value else None, archived=None)


def test_archive_expired_racing_delete_archived(store: TaskStore, other: TaskStore) -> None:
    for (task_id, shards), expired, deleted in every_interleaving(
        store,
        other.engine,
        lambda: two_shards(store, archived=False),
        lambda t: store.archive_expired(hours=0, terminal_only=False),
        lambda t: other.delete_archived(t[0]),
    ):
        assert acknowledged(expired) and task_id in expired.value["archived"]
        assert acknowledged(deleted)
        assert_rows(store, task_id, live=None, archived=None if deleted.value else shards)


def test_restore_racing_delete_is_one_or_the_other(store: TaskStore, other: TaskStore) -> None:
    for (task_id, shards), moved, deleted in every_interleaving(
        store,
        other.engine,
        lambda: two_shards(store, archived=True),
        lambda t: store.restore_task(t[0]),
        lambda t: other.delete(t[0]),
    ):
        assert acknowledged(moved) and moved.value is True
        assert acknowledged(deleted)
        assert_rows(store, task_id, live=None if deleted.value else shards, archived=None)


@pytest.mark.parametrize("move", ["archive", "restore"])
def test_clear_all_racing_a_move_leaves_nothing(
    store: TaskStore, other: TaskStore, move: str
) -> None:
    """clear_all empties the four tables one after the other: a move committed between
    two of its deletes must not survive it in part (shards without their task, or a
    task restored after the live table was emptied: PostgreSQL, before the tables
    were locked)."""

    def setup() -> tuple[str, str]:
        return new_task(store, shards=2), new_task(store, archived=True, shards=0)

    def moving(ids: tuple[str, str]) -> bool:
        live, archived = ids
        return other.archive_task(live) if move == "archive" else other.restore_task(archived)

    for _, cleared, moved in every_interleaving(
        store, other.engine, setup, lambda _: store.clear_all(), moving
    ):
        assert acknowledged(cleared) and acknowledged(moved)
        assert store.count() == store.count_archived() == 0  # one serial order or the other
        assert orphan_archived_shards(store) == 0


def insert_archived_shard(engine: Engine, task_id: str, marker: str) -> None:
    """Another program's write: an archived shard row for ``task_id``, straight in."""
    row = {**shard_to_row(TaskShard(task_id, 5, marker, "b"), utc_now_iso()), "archived_at": "x"}
    with engine.begin() as conn:
        conn.execute(insert(archived_task_shards), row)


@pytest.fixture
def outsider(module_url: URL) -> Iterator[Engine]:
    """A plain engine of another program on the same database (no store on it)."""
    engine = create_engine(module_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_restore_racing_an_outside_archived_shard_never_drops_it(
    store: TaskStore, outsider: Engine
) -> None:
    """A restore deletes exactly the archived shards it copied: one written meanwhile
    by another program (no foreign key holds it off) is never deleted uncopied."""
    for task_id, moved, written in every_interleaving(
        store,
        outsider,
        lambda: new_task(store, archived=True),
        lambda t: store.restore_task(t),
        lambda t: insert_archived_shard(outsider, t, f"{t}-outside"),
        orphans_allowed=True,  # written after the restore: the outsider's own orphan
    ):
        assert acknowledged(written)
        if acknowledged(moved, TaskConflictError):
            assert moved.value is True
            assert f"{task_id}-p0" in shard_set(store.get_shards(task_id))
        else:
            assert_rows(store, task_id, live=None, archived={f"{task_id}-p0", f"{task_id}-outside"})
        assert f"{task_id}-outside" in shard_markers(store, task_id)


def add_marker(value: int) -> Callable[[TaskInfo], None]:
    def change(info: TaskInfo) -> None:
        info.metadata[f"marker_{value}"] = value

    return change


def test_modify_racing_modify_keeps_both(store: TaskStore, other: TaskStore) -> None:
    """Two read-modify-writes of one task: the second waits for the first, so
    neither change is lost (a plain read-then-save lost one here)."""
    for task_id, first, second in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.modify(t, add_marker(1)),
        lambda t: other.modify(t, add_marker(2)),
    ):
        assert acknowledged(first) and acknowledged(second)
        metadata = store.get(task_id).metadata  # type: ignore[union-attr]
        assert metadata.get("marker_1") == 1 and metadata.get("marker_2") == 2


def test_modify_racing_delete_never_brings_a_task_back(store: TaskStore, other: TaskStore) -> None:
    for task_id, modified, deleted in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.modify(t, add_marker(1)),
        lambda t: other.delete(t),
    ):
        assert acknowledged(modified) and acknowledged(deleted) and deleted.value is True
        assert store.get(task_id) is None


def test_modify_racing_archive_leaves_one_copy(store: TaskStore, other: TaskStore) -> None:
    for task_id, modified, moved in every_gap(
        store,
        lambda: new_task(store),
        lambda t: store.modify(t, add_marker(1)),
        lambda t: other.archive_task(t),
    ):
        assert acknowledged(modified) and acknowledged(moved) and moved.value is True
        assert store.get(task_id) is None
        archived = store.get_archived(task_id)
        assert archived is not None
        assert (archived.metadata.get("marker_1") == 1) is (modified.value is not None)


def test_legacy_updates_racing_keep_both(store: TaskStore, other: TaskStore) -> None:
    """``TaskPersistence.update`` merges keyword fields into a record atomically."""
    mine, theirs = TaskPersistence(store=store), TaskPersistence(store=other)
    for task_id, first, second in every_gap(
        store,
        lambda: new_task(store),
        lambda t: mine.update(t, status="running", first=1),
        lambda t: theirs.update(t, second=2),
    ):
        assert acknowledged(first) and acknowledged(second)
        record = mine.load(task_id)
        assert record is not None
        assert (record["status"], record["first"], record["second"]) == ("running", 1, 2)


def aged_archive(store: TaskStore, task_id: str) -> None:
    """Make an archived task look archived long ago, so that a purge takes it."""
    table = archived_tasks
    with store.engine.begin() as conn:
        stmt = update(table).where(table.c.task_id == task_id).values(archived_at=LONG_AGO)
        conn.execute(stmt)


LONG_AGO = "2000-01-01T00:00:00+00:00"


def test_purge_racing_restore_is_one_or_the_other(store: TaskStore, other: TaskStore) -> None:
    """A restore waits on the purge's lock (or the purge on the restore's): the task
    ends purged whole or live with every shard, never archived shards without it."""

    def setup() -> tuple[str, set[str]]:
        task_id, shards = two_shards(store, archived=True)
        aged_archive(store, task_id)
        return task_id, shards

    for (task_id, shards), purged, restored in every_interleaving(
        store,
        other.engine,
        setup,
        lambda t: store.purge_archived(older_than_hours=1),
        lambda t: other.restore_task(t[0]),
    ):
        assert acknowledged(purged) and acknowledged(restored)
        gone = task_id in purged.value.task_ids
        assert gone is not restored.value  # exactly one of the two did it
        assert_rows(store, task_id, live=None if gone else shards, archived=None)


def test_purge_racing_archive_of_the_live_copy(store: TaskStore, other: TaskStore) -> None:
    """The task is live and has an old archived copy: the purge deletes the old copy
    and its shards only; the archive conflicts, or moves the live copy in after it."""

    def setup() -> str:
        task_id, _ = two_shards(store, archived=True)
        aged_archive(store, task_id)
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-live", "b"))
        return task_id

    for task_id, purged, moved in every_interleaving(
        store,
        other.engine,
        setup,
        lambda t: store.purge_archived(older_than_hours=1),
        lambda t: other.archive_task(t),
    ):
        assert acknowledged(purged) and task_id in purged.value.task_ids
        live = {f"{task_id}-live"}
        if acknowledged(moved, TaskConflictError):
            assert moved.value is True
            assert_rows(store, task_id, live=None, archived=live)
        else:
            assert_rows(store, task_id, live=live, archived=None)
