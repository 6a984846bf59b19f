"""Errors are translated once, at the executor's boundary, and walks check their
arguments when called (issue 25 point 4).

The guard: every public method of ``TaskStore`` (and the package's edges that run
SQL: export, import, the change feed, the row check), called on a store whose
database lost its tables under it, raises the store's own errors only, on SQLite,
PostgreSQL and MariaDB; never ``sqlalchemy.exc.*`` or a driver's exception.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, MetaData, create_engine, select
from sqlalchemy.exc import SQLAlchemyError

from tests.conftest import scratch_url
from uniqc_store import AsyncTaskStore, StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.repository import changes, row_check, transfer
from uniqc_store.schema.tables import tasks

#: What a call on a broken database may raise: the store's errors, and the plain
#: argument errors (``TaskConflictError`` and its kin are both).
OURS = (StoreError, TypeError, ValueError)

BAD_WALKS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"batch_size": -1}, ValueError),
    ({"batch_size": 0}, ValueError),
    ({"batch_size": "10"}, TypeError),
    ({"batch_size": True}, TypeError),
    ({"status": "nope"}, ValueError),
    ({"backend": 3}, TypeError),
]


def _task(task_id: str) -> TaskInfo:
    return TaskInfo(task_id=task_id, backend="b", status="success")


# -- walks check their arguments when called (one engine: no SQL runs) ---------


@pytest.mark.parametrize("method", ["iter_tasks", "iter_archived"])
@pytest.mark.parametrize(("arguments", "error"), BAD_WALKS)
def test_a_walk_refuses_bad_arguments_at_the_call(
    tmp_path: Path, method: str, arguments: dict[str, Any], error: type[Exception]
) -> None:
    with TaskStore(tmp_path) as store, pytest.raises(error):
        getattr(store, method)(**arguments)  # no next(): the call itself raises


@pytest.mark.parametrize("method", ["iter_tasks", "iter_archived"])
@pytest.mark.parametrize(("arguments", "error"), BAD_WALKS)
def test_an_async_walk_refuses_bad_arguments_at_the_call(
    tmp_path: Path, method: str, arguments: dict[str, Any], error: type[Exception]
) -> None:
    async def call() -> None:
        store = AsyncTaskStore(tmp_path)
        try:
            with pytest.raises(error):
                getattr(store, method)(**arguments)  # before any ``async for``
            assert store._core is None  # refused before the store was even opened
        finally:
            await store.aclose()

    asyncio.run(call())


# -- a driver error inside a walk is still the store's --------------------------


def _drop_tasks_table(path: Path) -> None:
    """Another connection drops ``tasks`` under the store (its shards first)."""
    other = sqlite3.connect(path)
    try:
        other.execute("PRAGMA foreign_keys = OFF")
        other.execute("DROP TABLE task_shards")
        other.execute("DROP TABLE tasks")
        other.commit()
    finally:
        other.close()


def test_a_table_dropped_mid_walk_is_a_store_error(tmp_path: Path) -> None:
    with TaskStore(tmp_path) as store:
        store.save_many(_task(f"uqt_w{i}") for i in range(5))
        walk = store.iter_tasks(batch_size=2)
        assert next(walk).task_id == "uqt_w0"
        _drop_tasks_table(tmp_path / "tasks.sqlite")
        with pytest.raises(StoreError, match="no such table") as caught:
            list(walk)
        assert not isinstance(caught.value, SQLAlchemyError)
        assert isinstance(caught.value.__cause__, SQLAlchemyError)


def test_a_table_dropped_mid_async_walk_is_a_store_error(tmp_path: Path) -> None:
    async def walk_through() -> BaseException:
        async with AsyncTaskStore(tmp_path) as store:
            await store.save_many(_task(f"uqt_w{i}") for i in range(5))
            walk = store.iter_tasks(batch_size=2)
            assert (await walk.__anext__()).task_id == "uqt_w0"
            _drop_tasks_table(tmp_path / "tasks.sqlite")
            try:
                async for _ in walk:
                    pass
            except BaseException as exc:  # checked below, outside the loop
                return exc
            raise AssertionError("the walk ended without an error")

    raised = asyncio.run(walk_through())
    assert isinstance(raised, StoreError) and "no such table" in str(raised)
    assert isinstance(raised.__cause__, SQLAlchemyError)


# -- the guard: every public call on a broken database -----------------------------


def _in_block(opener: Callable[[], Any]) -> None:
    with opener() as conn:
        conn.execute(select(tasks.c.task_id)).all()


def _with_session(store: TaskStore) -> None:
    from uniqc_store.models import TaskRow

    with store.session() as session:
        session.scalars(select(TaskRow)).all()


def _using(store: TaskStore) -> None:
    with store.transaction() as conn, store.using(conn) as inside:
        inside.get("uqt_1")


def _exported() -> list[str]:
    """A good export line (one task), written by a store of its own in memory."""
    with TaskStore(url="sqlite://") as other:
        other.save(_task("uqt_i"))
        out = io.StringIO()
        transfer.export_jsonl(other, out)
    return out.getvalue().splitlines()


#: Every public method (by name) and edge, with good arguments: each touches the database.
TOUCHING: dict[str, Callable[[TaskStore], Any]] = {
    "save": lambda s: s.save(_task("uqt_1")),
    "save_many": lambda s: s.save_many([_task("uqt_1"), _task("uqt_2")]),
    "get": lambda s: s.get("uqt_1"),
    "modify": lambda s: s.modify("uqt_1", lambda info: None),
    "list": lambda s: s.list(),
    "iter_tasks": lambda s: list(s.iter_tasks()),
    "count": lambda s: s.count(),
    "tally": lambda s: s.tally(),
    "delete": lambda s: s.delete("uqt_1"),
    "clear_completed": lambda s: s.clear_completed(),
    "clear_all": lambda s: s.clear_all(),
    "save_shard": lambda s: s.save_shard(TaskShard("uqt_1", 0, "p1", "b")),
    "save_shards": lambda s: s.save_shards([TaskShard("uqt_1", i, f"p{i}", "b") for i in (0, 1)]),
    "get_shards": lambda s: s.get_shards("uqt_1"),
    "get_shard_by_platform_id": lambda s: s.get_shard_by_platform_id("p1"),
    "find_uniqc_id_by_platform_id": lambda s: s.find_uniqc_id_by_platform_id("p1"),
    "delete_shards": lambda s: s.delete_shards("uqt_1"),
    "archive_task": lambda s: s.archive_task("uqt_1"),
    "restore_task": lambda s: s.restore_task("uqt_1"),
    "get_archived": lambda s: s.get_archived("uqt_1"),
    "get_archived_shards": lambda s: s.get_archived_shards("uqt_1"),
    "list_archived": lambda s: s.list_archived(),
    "iter_archived": lambda s: list(s.iter_archived()),
    "count_archived": lambda s: s.count_archived(),
    "delete_archived": lambda s: s.delete_archived("uqt_1"),
    "archive_expired": lambda s: s.archive_expired(hours=0),
    "purge_archived": lambda s: s.purge_archived(older_than_hours=0, keep_last=1),
    "expired_task_ids": lambda s: s.expired_task_ids(hours=0),
    "list_page": lambda s: s.list_page(),
    "list_archived_page": lambda s: s.list_archived_page(),
    "archive_many": lambda s: s.archive_many(["uqt_1", "uqt_2"]),
    "delete_many": lambda s: s.delete_many(["uqt_1", "uqt_2"]),
    "reading": lambda s: _in_block(s.reading),
    "transaction": lambda s: _in_block(s.transaction),
    "session": _with_session,
    "using": _using,
    "export": lambda s: transfer.export_jsonl(s, io.StringIO()),
    "import": lambda s: transfer.import_jsonl(s, _exported()),
    "count_rows": lambda s: transfer.count_rows(s),
    "check-rows": lambda s: list(row_check.RowScan(s)),
}
#: The rest: no table of the store is needed (they may succeed), run last in this order.
NOT_TOUCHING: dict[str, Callable[[TaskStore], Any]] = {
    "metrics": lambda s: s.metrics,
    "change feed": lambda s: changes.open_signal(s).read(),  # SQLite: a PRAGMA
    "aggregate_status": lambda s: s.aggregate_status([]),
    "schema_version": lambda s: s.schema_version(),
    "upgrade": lambda s: s.upgrade(),  # makes the tables again
    "close": lambda s: s.close(),
}


def test_the_guard_names_every_public_method() -> None:
    public = {name for name, _ in inspect.getmembers(TaskStore) if not name.startswith("_")}
    assert public <= set(TOUCHING) | set(NOT_TOUCHING), public - set(TOUCHING) - set(NOT_TOUCHING)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def broken_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    """A store at head whose tables were all dropped by another connection after it
    opened (MariaDB for ``mysql``: the shared server)."""
    with scratch_url(request.param, tmp_path) as url:
        store = TaskStore(url=url, auto_migrate=True)
        try:
            store.save(_task("uqt_0"))
            _drop_everything(url)
            yield store
        finally:
            store.close()
            store.engine.dispose()


def _drop_everything(url: URL) -> None:
    other = create_engine(url)
    try:
        with other.begin() as conn:
            schema = MetaData()
            schema.reflect(conn)
            schema.drop_all(conn)
    finally:
        other.dispose()


def test_every_call_on_a_broken_database_raises_only_the_stores_errors(
    broken_store: TaskStore,
) -> None:
    leaked: dict[str, str] = {}
    not_a_store_error: dict[str, str] = {}
    silent: list[str] = []
    for name, call in {**TOUCHING, **NOT_TOUCHING}.items():
        try:
            call(broken_store)
        except OURS as exc:
            if name in TOUCHING and not isinstance(exc, StoreError):  # good arguments
                not_a_store_error[name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        except Exception as exc:  # reported all at once below
            leaked[name] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:200]
            continue
        if name in TOUCHING:
            silent.append(name)
    assert leaked == {}
    assert not_a_store_error == {}
    assert silent == []  # each of them needs a table that is gone: each raised
