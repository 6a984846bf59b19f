"""One door: every statement the package runs goes through the store's executor.

The suite runs with the door enforced (``UNIQC_STORE_STRICT_DOOR=1``, set in
``conftest.py``): any connection the package checks out beside its executor
raises. The tests here check that guard, then the three workloads that lost
acknowledged writes when the code around the repository opened its own
connections: sessions read while threads save, two stores share one engine,
and a served in-memory store's dashboard is polled while tasks move. Each runs
on ``sqlite://``, a SQLite file, PostgreSQL and MariaDB; ``UNIQC_DOOR_SECONDS``
makes them run longer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import URL, Engine, func, select, text

from tests.conftest import scratch_url
from tests.http_server import served
from uniqc_store import StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import create_app
from uniqc_store.db.door import OutsideTheDoorError, exempt
from uniqc_store.db.engine import create_store_engine
from uniqc_store.schema.orm import TaskRow

SECONDS = float(os.environ.get("UNIQC_DOOR_SECONDS", "2.5"))
IN_MEMORY = URL.create("sqlite+pysqlite")


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "postgresql", "mysql"])
def door_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty database of each kind, ``sqlite://`` included."""
    if request.param == "sqlite-memory":
        yield IN_MEMORY
        return
    backend = "sqlite" if request.param == "sqlite-file" else request.param
    with scratch_url(backend, tmp_path) as url:
        yield url


class Workers:
    """Threads that run a body until the deadline and record what escaped it."""

    def __init__(self, seconds: float = SECONDS) -> None:
        self.deadline = time.monotonic() + seconds
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def start(self, body: Callable[[], None]) -> None:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # recorded: the test asserts there were none
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=SECONDS + 60)
            assert not thread.is_alive(), "a worker is stuck"


def stored_ids(store: TaskStore) -> tuple[set[str], set[str]]:
    """(live ids, archived ids)."""
    live = {t.task_id for t in store.iter_tasks()}
    return live, {t.task_id for t in store.iter_archived()}


# -- the guard ---------------------------------------------------------------------


def _connect_as(module: str, engine: Engine) -> None:
    """Check a connection out from code that belongs to ``module``."""
    code = compile(
        "with engine.connect() as conn:\n    conn.exec_driver_sql('SELECT 1')", module, "exec"
    )
    exec(code, {"__name__": module, "engine": engine})


def test_a_package_checkout_beside_the_executor_is_refused(tmp_path: Path) -> None:
    with TaskStore(tmp_path) as store:
        refused = r"uniqc_store\.api\.dashboard\.fake.*executor"
        with pytest.raises(OutsideTheDoorError, match=refused):
            _connect_as("uniqc_store.api.dashboard.fake", store.engine)
        _connect_as("my_application", store.engine)  # the application's own use is its own
        with exempt("a test"):
            _connect_as("uniqc_store.api.dashboard.fake", store.engine)
        with store.reading() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_every_engine_the_package_creates_is_guarded(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        with pytest.raises(OutsideTheDoorError):
            _connect_as("uniqc_store.somewhere", engine)
    finally:
        engine.dispose()


def test_stores_on_one_engine_share_one_executor(tmp_path: Path) -> None:
    engine = create_store_engine(IN_MEMORY)
    try:
        first, second = TaskStore(engine=engine), TaskStore(engine=engine)
        assert first._executor is second._executor
        first.save(TaskInfo(task_id="uqt_shared", backend="b"))
        assert second.get("uqt_shared") is not None
        first.close()
        assert second.count() == 1  # the held connection reopens for the other store
        second.close()
    finally:
        engine.dispose()


def test_transaction_commits_or_rolls_back_and_errors_are_the_stores(door_url: URL) -> None:
    with TaskStore(url=door_url, auto_migrate=True) as store:
        store.save(TaskInfo(task_id="uqt_t", backend="b"))
        with store.transaction() as conn:
            conn.execute(text("UPDATE tasks SET backend = 'c' WHERE task_id = 'uqt_t'"))
        info = store.get("uqt_t")
        assert info is not None and info.backend == "c"
        with pytest.raises(RuntimeError, match="undo"), store.transaction() as conn:
            conn.execute(text("UPDATE tasks SET backend = 'd' WHERE task_id = 'uqt_t'"))
            raise RuntimeError("undo")
        info = store.get("uqt_t")
        assert info is not None and info.backend == "c"
        with pytest.raises(StoreError, match="failed") as raised, store.reading() as conn:
            conn.execute(text("SELECT nothing FROM no_such_table"))
        assert not type(raised.value).__module__.startswith("sqlalchemy")
        with store.reading(snapshot=True) as conn:
            assert conn.execute(select(func.count()).select_from(TaskRow)).scalar_one() == 1


# -- the workloads -------------------------------------------------------------------


def test_saves_beside_session_reads_lose_nothing(door_url: URL) -> None:
    """8 threads save while 4 read through sessions: no error, every save kept."""
    store = TaskStore(url=door_url, auto_migrate=True)
    workers = Workers()
    acknowledged: list[str] = []

    def save(k: int) -> None:
        n = 0
        while workers.running():
            task_id = f"uqt_s{k}_{n}"
            store.save(TaskInfo(task_id=task_id, backend="b", metadata={"k": k}))
            acknowledged.append(task_id)
            n += 1

    def read() -> None:
        with store.session() as session:
            while workers.running():
                rows = session.scalars(select(TaskRow).limit(20)).all()
                if rows:
                    assert session.get(TaskRow, rows[-1].task_id) is not None
                session.scalar(select(func.count()).select_from(TaskRow))

    try:
        for k in range(8):
            workers.start(lambda k=k: save(k))
        for _ in range(4):
            workers.start(read)
        workers.join()
        assert workers.errors == []
        live, _ = stored_ids(store)
        assert acknowledged and set(acknowledged) <= live
        assert store.count() == len(acknowledged)
    finally:
        store.close()


def test_two_stores_on_one_engine_lose_nothing(door_url: URL) -> None:
    """Two stores share one engine, four threads move tasks for a few seconds."""
    engine = create_store_engine(door_url)
    TaskStore(engine=engine, auto_migrate=True).close()
    stores = [TaskStore(engine=engine), TaskStore(engine=engine)]
    workers = Workers()
    where: dict[str, str] = {}  # task id -> the table its last acknowledged call left it in

    def churn(k: int) -> None:
        n = 0
        while workers.running():
            mine, theirs = stores[n % 2], stores[(n + 1) % 2]
            task_id = f"uqt_m{k}_{n}"
            mine.save(TaskInfo(task_id=task_id, backend="b"))
            theirs.save_shard(TaskShard(task_id, 0, f"{task_id}-p", "b"))
            where[task_id] = "live"
            assert theirs.archive_task(task_id)
            where[task_id] = "archived"
            if n % 2:
                assert mine.restore_task(task_id)
                where[task_id] = "live"
            assert theirs.get(task_id) is not None or mine.get_archived(task_id) is not None
            n += 1

    try:
        for k in range(4):
            workers.start(lambda k=k: churn(k))
        workers.join()
        assert workers.errors == []
        live, archived = stored_ids(stores[0])
        assert where
        for task_id, table in where.items():
            assert (task_id in live, task_id in archived) == (table == "live", table == "archived")
            shards = (stores[1].get_shards if table == "live" else stores[1].get_archived_shards)(
                task_id
            )
            assert [s.platform_task_id for s in shards] == [f"{task_id}-p"]
    finally:
        for store in stores:
            store.close()
        engine.dispose()


def test_a_served_store_polled_while_tasks_move_loses_nothing(door_url: URL) -> None:
    """The dashboard's reads and live feed run while other threads move tasks."""
    store = TaskStore(url=door_url, auto_migrate=True)
    ids = [f"uqt_d{k}" for k in range(20)]
    for task_id in ids:
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-p", "b"))
    workers = Workers()
    statuses: list[int] = []

    def move(mine: list[str]) -> None:
        while workers.running():
            for task_id in mine:
                assert store.archive_task(task_id)
            for task_id in mine:  # each round ends with every task live again
                assert store.restore_task(task_id)

    def poll(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while workers.running():
                for path in (
                    "/api/dashboard/tasks?limit=10",
                    "/api/dashboard/tasks?table=archived",
                    "/api/dashboard/counts",
                    "/api/dashboard/counts?table=archived",
                    f"/api/dashboard/task/{ids[0]}",
                    "/api/tasks/counts",
                ):
                    statuses.append(client.get(path).status_code)

    def listen(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while workers.running():
                with client.stream("GET", "/api/events") as events:
                    statuses.append(events.status_code)
                    for line in events.iter_lines():
                        if line.startswith("event: change") or not workers.running():
                            break

    try:
        with served(create_app(store)) as base:
            for half in (ids[:10], ids[10:]):
                workers.start(lambda half=half: move(half))
            for _ in range(3):
                workers.start(lambda: poll(base))
            workers.start(lambda: listen(base))
            workers.join()
        assert workers.errors == []
        assert statuses and set(statuses) == {200}
        live, archived = stored_ids(store)
        assert live == set(ids) and archived == set()
        for task_id in ids:
            assert [s.platform_task_id for s in store.get_shards(task_id)] == [f"{task_id}-p"]
    finally:
        store.close()
