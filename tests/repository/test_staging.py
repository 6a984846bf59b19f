"""The bulk paths (issue 28 point 4): on the servers an import and a large ``save_many``
go through temporary staging tables and one set-based upsert per table, and an export
is one streamed pass in one snapshot; on SQLite the batches stay. Every engine keeps
the same rows, the same errors and all or nothing."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import URL, Connection, event, select, text

from tests.app_transactions import Undo, app_transaction
from tests.async_portal import async_url
from tests.repository.test_stored_rows import shard_row
from uniqc_store import AsyncTaskStore, StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.repository import staging, transfer
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks

FOUR = (tasks, task_shards, archived_tasks, archived_task_shards)


def dump(store: TaskStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables, as stored."""
    with store.transaction() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t))), key=repr) for t in FOUR}


def seed(store: TaskStore, count: int) -> None:
    """``count`` tasks (odd payloads among them), two shards on every third, every
    fifth archived."""
    store.save_many(
        TaskInfo(
            task_id=f"uqt_{i:04}",
            backend="b",
            status="success" if i % 2 else "running",
            result=None if i % 4 == 0 else {"n": i, "text": 'ünï "q" \\ \t 😀'},
            metadata={"i": i},
            error_message=None if i % 3 else "e\nwith a newline",
        )
        for i in range(count)
    )
    for i in range(0, count, 3):
        store.save_shards(
            [TaskShard(f"uqt_{i:04}", k, f"p{i}-{k}", "b", result={"k": k}) for k in range(2)]
        )
    for i in range(0, count, 5):
        assert store.archive_task(f"uqt_{i:04}")


def exported(store: TaskStore) -> list[str]:
    out = io.StringIO()
    transfer.export_jsonl(store, out)
    return out.getvalue().splitlines()


def emptied(store: TaskStore) -> None:
    with store.transaction() as conn:
        for table in reversed(FOUR):
            conn.execute(table.delete())


def one_connection(store: TaskStore) -> TaskStore:
    """A store on the same database whose pool holds one connection, so what one unit
    leaves on its session (a temporary table) the next one sees."""
    if store.dialect == "sqlite":
        return TaskStore(url=store.url)
    return TaskStore(url=store.url, engine_options={"pool_size": 1, "max_overflow": 0})


def staging_tables_left(store: TaskStore) -> list[str]:
    """The staging tables the store's (one) connection still has."""
    left = []
    for table in FOUR:
        name = staging.PREFIX + table.name
        try:
            with store.transaction() as conn:
                conn.execute(text(f"SELECT 1 FROM {name}"))
        except StoreError:
            continue
        left.append(name)
    return left


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 7 rows: an import of a few dozen lines is many COPYs / INSERTs."""
    monkeypatch.setattr(staging, "CHUNK", 7)


@pytest.mark.usefixtures("small_chunks")
def test_a_round_trip_keeps_every_row_and_the_last_line_of_a_key_wins(store: TaskStore) -> None:
    seed(store, 40)
    before = dump(store)
    lines = exported(store)
    emptied(store)
    counts = transfer.import_jsonl(store, lines)
    assert sum(counts.values()) == len(lines) and counts["archived_tasks"] == 8
    assert dump(store) == before
    # again over the rows now there (every one an update), a key on three lines
    item = json.loads(next(line for line in lines if '"uqt_0001"' in line))
    twice = [json.dumps({**item, "row": {**item["row"], "status": s}}) for s in ("failed", "x1")]
    with pytest.raises(ValueError, match=r"^line 2: unknown task status 'x1'"):  # as save()
        transfer.import_jsonl(store, [lines[0], twice[1]])
    last = json.dumps({**item, "row": {**item["row"], "status": "cancelled", "shots": 7}})
    transfer.import_jsonl(store, [*lines, twice[0], last])
    got = store.get("uqt_0001")
    assert got is not None and (got.status, got.shots) == ("cancelled", 7)
    assert dump(store)["archived_task_shards"] == before["archived_task_shards"]


def _bad_endings() -> Iterator[tuple[str, str, str]]:
    yield "not-json", "{oops", r"^line \d+: not JSON"
    shard = shard_row("uqt_nobody", shard_index=3, platform_task_id="p")
    orphan = json.dumps({"table": "task_shards", "row": shard})
    yield "orphan-shard", orphan, r"^line \d+: shard 3 of task 'uqt_nobody' has no task"


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(("ending", "bad", "error"), list(_bad_endings()), ids=lambda v: v[:12])
def test_a_bad_last_line_writes_nothing_and_no_staging_table_is_left(
    store: TaskStore, ending: str, bad: str, error: str
) -> None:
    """Dozens of lines are staged (and the tasks of the orphan's neighbours written on
    SQLite) before the bad line: nothing stays, in the store or on the connection."""
    seed(store, 30)
    lines = exported(store)
    emptied(store)
    seed(store, 3)
    before = dump(store)
    single = one_connection(store)
    try:
        with pytest.raises(ValueError, match=error) as refused:
            transfer.import_jsonl(single, [*lines, bad])
        assert f"line {len(lines) + 1}:" in str(refused.value)
        assert dump(single) == before
        assert staging_tables_left(single) == []
        transfer.import_jsonl(single, lines)  # committed: gone as well
        assert staging_tables_left(single) == []
        assert len(exported(single)) == len(lines)
    finally:
        single.close()


def test_a_shard_may_follow_its_task_in_the_same_chunk_but_not_precede_it(
    store: TaskStore,
) -> None:
    """The parent rule is by line: a task on a later line does not count."""
    seed(store, 4)
    lines = exported(store)
    emptied(store)
    shard = next(i for i, line in enumerate(lines) if '"task_shards"' in line)
    parent = json.loads(lines[shard])["row"]["uniqc_task_id"]
    task = next(i for i, line in enumerate(lines) if f'"task_id": "{parent}"' in line)
    assert task < shard
    swapped = [*lines]
    swapped[task], swapped[shard] = swapped[shard], swapped[task]
    with pytest.raises(ValueError, match=rf"^line {task + 1}: shard 0 of task '{parent}'"):
        transfer.import_jsonl(store, swapped)
    assert dump(store) == {t.name: [] for t in FOUR}
    transfer.import_jsonl(store, lines)
    assert len(exported(store)) == len(lines)


class Statements:
    """The statements SQLAlchemy sends on an engine (COPY goes past it: the driver's)."""

    def __init__(self, store: TaskStore) -> None:
        self.seen: list[str] = []
        self._engine = store.engine
        event.listen(store.engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def into(self, table: str) -> list[str]:
        return [s for s in self.seen if s.startswith(f"INSERT INTO {table} ")]

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)


def test_on_servers_one_set_based_upsert_per_table(store: TaskStore) -> None:
    if store.dialect == "sqlite":
        pytest.skip("SQLite upserts by batches (executemany): no server round trips to save")
    seed(store, 30)
    lines = exported(store)
    emptied(store)
    sent = Statements(store)
    try:
        transfer.import_jsonl(store, lines)
        for table in FOUR:
            merges = sent.into(table.name)
            assert len(merges) == 1 and f"FROM {staging.PREFIX}{table.name}" in merges[0]
        sent.seen.clear()
        infos = [TaskInfo(task_id=f"uqt_many_{i:05}", backend="b") for i in range(1500)]
        infos.append(TaskInfo(task_id="uqt_many_00000", backend="again", metadata={"n": 2}))
        assert store.save_many(infos) == 1501
        assert len(sent.into("tasks")) == 1
        assert f"FROM {staging.PREFIX}tasks" in sent.into("tasks")[0]
    finally:
        sent.close()
    # one id twice: the last one's values, the first one's submit_time, as in turn
    got = store.get("uqt_many_00000")
    assert got is not None and (got.backend, got.metadata) == ("again", {"n": 2})
    assert store.count() == 24 + 1500


def test_save_many_through_staging_keeps_submit_time_and_stamps_every_row(
    store: TaskStore,
) -> None:
    """Large and small ``save_many`` write the same rows (on every engine)."""
    old = TaskInfo(task_id="uqt_old", backend="b", submit_time="2020-01-01T00:00:00+00:00")
    store.save(old)
    infos = [TaskInfo(task_id=f"uqt_{i:05}", backend="b", status="running") for i in range(1200)]
    again = TaskInfo(task_id="uqt_old", backend="moved", submit_time="2024-01-01T00:00:00+00:00")
    assert store.save_many([*infos, again]) == 1201
    got = store.get("uqt_old")
    assert got is not None and got.backend == "moved"
    assert got.submit_time == "2020-01-01T00:00:00+00:00"  # kept, as save() keeps it
    assert {i.update_time for i in [*infos, again]} == {got.update_time}
    assert store.count(status="running") == 1200


def test_on_servers_an_export_is_one_snapshot(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes made while the export runs (here: between two of its fetches) are not
    in it: a task saved, one archived, one deleted."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite exports range by range (the WAL rule): not one snapshot")
    monkeypatch.setattr(transfer, "STREAM_ROWS", 2)
    seed(store, 10)
    before = exported(store)
    calls = 0

    def write_meanwhile(_rows: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            store.save(TaskInfo(task_id="uqt_9999", backend="b"))
            assert store.archive_task("uqt_0009")
            assert store.delete("uqt_0008")

    out = io.StringIO()
    transfer.export_jsonl(store, out, write_meanwhile)
    assert calls > 4
    assert out.getvalue().splitlines() == before
    assert len(exported(store)) == len(before)  # one more, one fewer


def test_bulk_calls_inside_the_applications_transaction(store: TaskStore) -> None:
    """Two large ``save_many`` and an import in one transaction of the application's
    (``using()``): each staging table is dropped when its call ends, so the next call
    can make it again; the application's rollback takes everything back."""
    seed(store, 6)
    lines = exported(store)
    emptied(store)
    first = [TaskInfo(task_id=f"uqt_a{i:05}", backend="b") for i in range(1100)]
    second = [TaskInfo(task_id=f"uqt_b{i:05}", backend="b") for i in range(1100)]
    with pytest.raises(Undo), app_transaction(store) as conn, store.using(conn) as tx:
        tx.save_many(first)
        transfer.import_jsonl(tx, lines)
        tx.save_many(second)
        assert tx.count() == 2200 + 4
        raise Undo
    assert store.count() == 0
    with app_transaction(store) as conn, store.using(conn) as tx:
        tx.save_many(first)
        transfer.import_jsonl(tx, lines)
        tx.save_many(second)
    assert store.count() == 2200 + 4
    assert len(exported(store)) == len(lines) + 2200


def test_a_large_save_many_of_the_async_store(module_url: URL) -> None:
    """``AsyncTaskStore`` runs the same work on the async drivers: on psycopg's async
    connection the COPY is awaited (``await_only``), on aiomysql the INSERTs go through
    SQLAlchemy's adapter."""
    infos = [TaskInfo(task_id=f"uqt_async_{i:05}", backend="b") for i in range(1200)]

    async def main() -> tuple[int, int]:
        async with AsyncTaskStore(url=async_url(module_url), auto_migrate=True) as store:
            saved = await store.save_many([*infos, TaskInfo("uqt_async_00000", "again")])
            got = await store.get("uqt_async_00000")
            assert got is not None and got.backend == "again"
            return saved, await store.count()

    try:
        assert asyncio.run(main()) == (1201, 1200)
    finally:
        with TaskStore(url=module_url) as store:
            store.clear_all()
