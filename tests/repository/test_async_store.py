"""``AsyncTaskStore`` on its own terms, on every engine: many coroutines on one loop,
cancellation mid-transaction, a loop that never stalls, the URLs and engines each
store class takes. (The store contract itself runs over it through
``tests/async_portal.py``: the ``*-async`` variants.)"""

from __future__ import annotations

import asyncio
import gc
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import URL, create_engine, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.async_portal import async_url, sync_url
from uniqc_store import AsyncTaskStore, StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.models import TaskRow
from uniqc_store.schema.tables import tasks
from uniqc_store.schema.values import task_to_row

T = TypeVar("T")


@pytest.fixture
def url(module_url: URL) -> Iterator[URL]:
    """An async store's URL on each backend's scratch database (emptied afterwards)."""
    yield async_url(module_url)
    with TaskStore(url=module_url, auto_migrate=True) as store:
        store.clear_all()


#: A pool for 50 tasks at once: 10 of their calls in the bridge at once (the async
#: store's default is 4: ``async_bridge.ASYNC_POOL_SIZE``), overflow for their blocks.
POOL_FOR_50 = {"pool_size": 10, "max_overflow": 50}


def run(
    url: URL, work: Callable[[AsyncTaskStore], Awaitable[T]], pool: dict[str, int] | None = None
) -> T:
    """``work(store)`` on a fresh event loop, with a store opened and closed around it
    (on servers with ``pool`` as engine options, by default ``POOL_FOR_50``)."""

    async def main() -> T:
        options = POOL_FOR_50 if pool is None else pool
        if url.get_backend_name() == "sqlite":
            options = None
        async with AsyncTaskStore(url=url, auto_migrate=True, engine_options=options) as store:
            return await work(store)

    return asyncio.run(main())


def info(task_id: str, **kwargs: Any) -> TaskInfo:
    return TaskInfo(task_id=task_id, backend="b", status="success", **kwargs)


# -- coroutines on one loop --------------------------------------------------


def test_concurrent_modifies_lose_no_update(url: URL) -> None:
    async def work(store: AsyncTaskStore) -> dict[str, Any]:
        await store.save(info("uqt_counter", metadata={"n": 0}))

        def bump(task: TaskInfo) -> None:
            task.metadata["n"] += 1

        await asyncio.gather(*(store.modify("uqt_counter", bump) for _ in range(40)))
        found = await store.get("uqt_counter")
        assert found is not None
        return found.metadata

    assert run(url, work) == {"n": 40}


def test_one_archive_of_many_at_once_wins_and_no_shard_is_lost(url: URL) -> None:
    async def work(store: AsyncTaskStore) -> tuple[list[bool], int, int]:
        await store.save(info("uqt_race"))
        await store.save_shards(TaskShard("uqt_race", i, f"p-{i}", "b") for i in range(5))
        moved = await asyncio.gather(*(store.archive_task("uqt_race") for _ in range(20)))
        return moved, len(await store.get_archived_shards("uqt_race")), await store.count()

    moved, shards, live = run(url, work)
    assert moved.count(True) == 1 and shards == 5 and live == 0


def test_each_task_has_its_own_nested_call_flag(url: URL) -> None:
    """Inside its ``transaction()`` block a task's own store call is refused as nested;
    another task's call on the same loop meanwhile is not (it is not inside anything)."""

    async def work(store: AsyncTaskStore) -> list[str]:
        inside = asyncio.Event()
        seen: list[str] = []

        async def holder() -> None:
            async with store.transaction() as conn:
                await conn.execute(insert(tasks), task_to_row(info("uqt_block"), "2026-01-01"))
                with pytest.raises(StoreError, match="inside another store call"):
                    await store.get("uqt_block")
                inside.set()
                await asyncio.sleep(0.2)
                seen.append("holder done")

        async def neighbour() -> None:
            await inside.wait()
            await store.save(info("uqt_neighbour"))
            seen.append("neighbour saved")

        await asyncio.gather(holder(), neighbour())
        assert await store.get("uqt_block") is not None
        assert await store.get("uqt_neighbour") is not None
        return seen

    seen = run(url, work)
    assert sorted(seen) == ["holder done", "neighbour saved"]


# -- cancellation --------------------------------------------------------------


def test_a_call_cancelled_mid_transaction_is_rolled_back(url: URL) -> None:
    async def work(store: AsyncTaskStore) -> None:
        written = asyncio.Event()

        async def block() -> None:
            async with store.transaction() as conn:
                await conn.execute(insert(tasks), task_to_row(info("uqt_cancel"), "2026-01-01"))
                written.set()
                await asyncio.sleep(30)

        task = asyncio.ensure_future(block())
        await written.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.get("uqt_cancel") is None  # rolled back
        await store.save(info("uqt_after"))  # and the store still works
        assert [t.task_id for t in await store.list()] == ["uqt_after"]

    run(url, work)


def test_a_modify_cancelled_while_its_change_runs_writes_nothing(url: URL) -> None:
    """SQLite: the change runs on the worker thread; the call is rolled back before its
    COMMIT. Servers: the change runs on the loop, the row's UPDATE is awaited when the
    cancellation arrives (the row is held by another connection meanwhile)."""

    async def work(store: AsyncTaskStore) -> None:
        await store.save(info("uqt_mod", metadata={"n": 0}))
        running, release = threading.Event(), threading.Event()
        holder = None if store.dialect == "sqlite" else create_store_engine(sync_url(url)).connect()

        def change(task: TaskInfo) -> None:
            task.metadata["n"] = 1
            running.set()
            if store.dialect == "sqlite":
                release.wait(10)

        if holder is not None:  # the modify's locking read waits for this lock, on the loop
            holder.execute(
                select(tasks.c.task_id).where(tasks.c.task_id == "uqt_mod").with_for_update()
            )
        call = asyncio.ensure_future(store.modify("uqt_mod", change))
        if holder is None:
            while not running.is_set():
                await asyncio.sleep(0.005)
        else:
            await asyncio.sleep(0.3)  # the modify waits for the row lock
        call.cancel()
        await asyncio.sleep(0.05)  # the loop delivers the cancellation (then the change ends)
        release.set()
        if holder is not None:
            holder.rollback()
            holder.close()
        with pytest.raises(asyncio.CancelledError):
            await call
        found = await store.get("uqt_mod")
        assert found is not None and found.metadata == {"n": 0}
        assert (await store.modify("uqt_mod", change)) is not None  # usable again
        found = await store.get("uqt_mod")
        assert found is not None and found.metadata == {"n": 1}

    run(url, work)


# -- the loop never waits for the database ------------------------------------

#: The issue's bounds on the loop's lag while 50 tasks use the store.
LAG_P99_S, LAG_MAX_S = 0.020, 0.100


async def tick_until(stop: float, lags: list[float]) -> None:
    """A 1 ms ticker: how late the loop runs it each time, until ``stop``."""
    while time.monotonic() < stop:
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - before - 0.001)


def machine_lag() -> tuple[float, float]:
    """The ticker's p99 and max lag on an idle loop for 1 s: the machine's own
    scheduling delay (tens of ms on a 2-core box running a dozen processes), which no
    store can remove and which the bounds below are measured on top of."""
    lags: list[float] = []
    asyncio.run(tick_until(time.monotonic() + 1, lags))
    return statistics.quantiles(lags, n=100)[98], max(lags)


def test_fifty_tasks_never_stall_the_loop(url: URL) -> None:
    """50 tasks mix save / get / list(limit=50) / archive_task with 4 KiB payloads for
    5 s while a 1 ms ticker measures how late the loop runs it: the store may add at
    most the issue's bounds to what an idle loop sees on this machine right now. With
    the store's default pool: each call in the bridge may hold the loop for a slice of
    its work, so the lag grows with the pool's size (README "Async")."""
    payload = {"blob": "x" * 4096}

    async def work(store: AsyncTaskStore) -> tuple[list[float], int]:
        await store.save(info("uqt_warm"))
        stop = time.monotonic() + 5
        lags: list[float] = []
        calls = 0

        async def ticker() -> None:
            await tick_until(stop, lags)

        async def worker(n: int) -> None:
            nonlocal calls
            i = 0
            while time.monotonic() < stop:
                task_id = f"uqt_lag_{n}_{i}"
                await store.save(info(task_id, result=payload))
                await store.get(task_id)
                if i % 4 == 0:
                    await store.list(limit=50)
                if i % 3 == 0:
                    await store.archive_task(task_id)
                calls += 4
                i += 1

        await asyncio.gather(ticker(), *(worker(n) for n in range(50)))
        return lags, calls

    # The objects the test process made before (pytest's, the modules') are moved out of
    # the collector's view: a full collection of them (160 ms measured here) is the
    # interpreter's pause, not a wait of the store's (``gc.freeze``, as latency-bound
    # servers do after start-up).
    gc.collect()
    gc.freeze()
    try:
        idle_p99, idle_max = machine_lag()
        lags, calls = run(url, work, pool={})  # the store's own pool: 4 calls in the bridge
    finally:
        gc.unfreeze()
    p99 = statistics.quantiles(lags, n=100)[98]
    assert calls > 200, calls  # the store did work meanwhile
    figures = (p99, max(lags), calls, idle_p99, idle_max)
    assert p99 < LAG_P99_S + idle_p99, figures
    assert max(lags) < LAG_MAX_S + idle_max, figures


# -- reading, walks, sessions ------------------------------------------------


def test_walks_blocks_and_sessions(url: URL) -> None:
    async def work(store: AsyncTaskStore) -> None:
        await store.save_many(info(f"uqt_w{i:02}") for i in range(25))
        walked = [t.task_id async for t in store.iter_tasks(batch_size=7)]
        assert walked == [f"uqt_w{i:02}" for i in range(25)]
        walk = store.iter_tasks(batch_size=10)
        first = [t.task_id async for t in _first(walk, 3)]
        assert first == ["uqt_w00", "uqt_w01", "uqt_w02"]
        await walk.aclose()  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="batch_size"):
            store.iter_tasks(batch_size=0)  # checked when called, as TaskStore's
        async with store.reading(snapshot=True) as conn:
            assert await conn.scalar(select(tasks.c.task_id).limit(1)) == "uqt_w00"
        async with store.session() as session:
            rows = (await session.execute(select(TaskRow).order_by(TaskRow.task_id))).scalars()
            assert [row.task_id for row in rows][:2] == ["uqt_w00", "uqt_w01"]
            assert (await session.get(TaskRow, "uqt_w03")) is not None
            session.add(TaskRow(task_id="uqt_orm", backend="b", status="x"))
            with pytest.raises(StoreError, match="for reads"):
                await session.flush()

    run(url, work)


async def _first(walk: AsyncIterator[T], count: int) -> AsyncIterator[T]:
    async for item in walk:
        yield item
        count -= 1
        if count == 0:
            return


def test_an_async_engine_of_your_own(module_url: URL) -> None:
    if module_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite: the async store takes a sync engine (its worker runs it)")

    async def main() -> int:
        engine = create_async_engine(async_url(module_url))
        try:
            async with AsyncTaskStore(engine=engine, auto_migrate=True) as store:
                await store.save(info("uqt_own_engine"))
                count = await store.count()
                await store.clear_all()
            async with engine.connect() as conn:  # still the caller's, usable
                await conn.execute(text("SELECT 1"))
            return count
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 1


# -- what each class takes ---------------------------------------------------


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ("postgresql+psycopg_async://u:secret@h/db", "AsyncTaskStore"),
        ("mysql+aiomysql://u:secret@h/db", "AsyncTaskStore"),
        ("sqlite+aiosqlite:///x.sqlite", "AsyncTaskStore"),
    ],
)
def test_taskstore_refuses_an_async_url_naming_the_class_that_takes_it(
    given: str, names: str
) -> None:
    with pytest.raises(ValueError, match=names) as caught:
        TaskStore(url=given)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_taskstore_refuses_an_async_engine() -> None:
    engine = create_async_engine("postgresql+psycopg_async://u@127.0.0.1:1/db")
    with pytest.raises(TypeError, match=r"AsyncTaskStore\(engine=") as caught:
        TaskStore(engine=engine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncTaskStore"):
        TaskStore(engine=engine.sync_engine)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "given", ["postgresql+psycopg://u:secret@h/db", "mysql+pymysql://u:secret@h/db"]
)
def test_asynctaskstore_refuses_a_sync_server_url_naming_taskstore(given: str) -> None:
    with pytest.raises(ValueError, match="TaskStore") as caught:
        AsyncTaskStore(url=given)
    assert "+psycopg_async://" in str(caught.value) or "+aiomysql://" in str(caught.value)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_asynctaskstore_refuses_a_sync_server_engine() -> None:
    engine = create_engine("postgresql+psycopg://u@127.0.0.1:1/db")
    with pytest.raises(TypeError, match=r"TaskStore.*psycopg_async"):
        AsyncTaskStore(engine=engine)


def test_asynctaskstore_takes_an_aiosqlite_url_as_its_own_file(tmp_path: Any) -> None:
    async def main() -> str:
        url = f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite'}"
        async with AsyncTaskStore(url=url) as store:
            await store.save(info("uqt_file"))
            return str(store.db_path)

    assert asyncio.run(main()) == str(tmp_path / "a.sqlite")
    with TaskStore(url=f"sqlite:///{tmp_path / 'a.sqlite'}") as sync:
        assert sync.get("uqt_file") is not None


# -- using(): the application's transaction ------------------------------------


class Undo(Exception):
    """Raised to roll the application's transaction back."""


def test_using_joins_the_applications_transaction(url: URL) -> None:
    """A rollback of the application's transaction undoes its row and the store's; a
    commit keeps both (servers: the application's ``AsyncConnection``; SQLite: the
    connection of the store's ``transaction()`` block)."""

    async def work(store: AsyncTaskStore) -> tuple[int, list[str]]:
        async def app_transaction(job: str, task_id: str) -> None:
            if store.dialect == "sqlite":
                context: Any = store.transaction()
            else:
                context = store.engine.begin()  # type: ignore[union-attr]
            async with context as conn, store.using(conn) as tx_store:
                await conn.execute(text("INSERT INTO uqt_app_jobs (id) VALUES (:id)"), {"id": job})
                await tx_store.save(info(task_id))
                assert await tx_store.get(task_id) is not None
                if job == "undone":
                    raise Undo

        async with store.transaction() as conn:
            await conn.execute(text("CREATE TABLE uqt_app_jobs (id VARCHAR(40) PRIMARY KEY)"))
        try:
            with pytest.raises(Undo):
                await app_transaction("undone", "uqt_undone")
            await app_transaction("kept", "uqt_kept")
            async with store.reading() as conn:
                jobs = (await conn.execute(text("SELECT id FROM uqt_app_jobs"))).scalars().all()
            return len(jobs), [t.task_id for t in await store.list()]
        finally:
            async with store.transaction() as conn:
                await conn.execute(text("DROP TABLE uqt_app_jobs"))

    assert run(url, work) == (1, ["uqt_kept"])
