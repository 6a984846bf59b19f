"""``AsyncTaskStore``: ``TaskStore``'s methods as coroutines, over the sync store's work.

Each coroutine calls the same method of a ``TaskStore`` on the same engine, run
where it does not block the event loop (``db/async_bridge.py``: SQLAlchemy's
greenlet bridge on servers, one worker thread per engine on SQLite). So the
statements, the argument checks, the moves, the retry and "outcome unknown"
rules and the error translation are the sync store's, not copies; this module
only says where each call runs. Signatures and docstrings are the sync
store's too (``tests/repository/test_async_store.py`` checks every public one).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import URL, Engine

from uniqc_store.db import async_bridge
from uniqc_store.db.async_bridge import AsyncUnitConnection
from uniqc_store.db.executor import executor_for
from uniqc_store.db.metrics import MetricsSnapshot
from uniqc_store.db.urls import redact, sqlite_file_path
from uniqc_store.records import TERMINAL_STATUSES, TaskInfo, TaskShard, TaskStatus
from uniqc_store.repository import archive, counts
from uniqc_store.repository.pages import Page
from uniqc_store.repository.store import TaskStore, check_open_arguments, walk_params
from uniqc_store.timeouts import Timeouts

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

P = ParamSpec("P")
T = TypeVar("T")


class AsyncTaskStore:
    """``TaskStore`` for asyncio: the same methods, arguments, results and errors, awaited.

    ``AsyncTaskStore(cache_dir=None, *, url=None, engine=None, ...)`` takes what
    ``TaskStore`` takes, with async URLs for servers (``postgresql+psycopg_async://``,
    ``mysql+aiomysql://``) or an ``AsyncEngine`` (``create_async_engine``); SQLite
    (``sqlite://`` or ``sqlite+aiosqlite://`` URLs, or a sync SQLite engine) runs on
    a worker thread of the engine's. The database is opened (and migrated as
    ``TaskStore`` would) on the first call or ``async with``; ``await
    store.aclose()`` releases it. ``iter_tasks`` / ``iter_archived`` are for ``async
    for``; ``reading()`` / ``transaction()`` for ``async with`` (their connection's
    ``execute`` is awaited); ``session()`` is an ``AsyncSession``; a ``modify``
    change and a ``purge_archived`` progress callback are plain functions. A call
    cancelled while its transaction is open is rolled back.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        url: str | URL | None = None,
        engine: Engine | AsyncEngine | None = None,
        auto_migrate: bool | None = None,
        sqlite_synchronous: str = "FULL",
        engine_options: dict[str, Any] | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        check_open_arguments(timeouts, engine_options)
        self.url, self.engine, self._owns_engine = async_bridge.async_store_engine(
            url,
            cache_dir,
            engine,
            synchronous=sqlite_synchronous,
            timeouts=timeouts or Timeouts(),
            options=engine_options,
        )
        self.dialect: str = self.engine.dialect.name
        self.db_path: Path | None = sqlite_file_path(self.url)
        self.cache_dir: Path | None = self.db_path.parent if self.db_path else None
        self._sync_engine = async_bridge.sync_engine_of(self.engine)
        self._executor = executor_for(self._sync_engine, timeouts)
        self._runner: async_bridge.Runner = (
            async_bridge.worker_for(self._sync_engine)
            if self.dialect == "sqlite"
            else async_bridge.GreenletRunner(self.engine)  # type: ignore[arg-type]
        )
        self._open_with = (auto_migrate, timeouts)
        self._core: TaskStore | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    # -- where the calls run ------------------------------------------------

    async def _store(self) -> TaskStore:
        """The sync store the calls run on, opened on first use (once, whichever task
        comes first; the others wait for it)."""
        async with self._opening:
            core = self._core
            if core is None:
                if self._closed:
                    raise ValueError("this AsyncTaskStore is closed: open a new one")
                core = await self._runner.call(self._open_core)
                self._core = core
            return core

    def _open_core(self) -> TaskStore:
        auto_migrate, timeouts = self._open_with
        return TaskStore(engine=self._sync_engine, auto_migrate=auto_migrate, timeouts=timeouts)

    async def _call(
        self, method: Callable[Concatenate[TaskStore, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        self._executor.refuse_nested()  # inside a SQLite block the worker is this task's
        core = self._core or await self._store()
        return await self._runner.call(method, core, *args, **kwargs)

    # -- lifecycle -------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> None:
        await self._call(TaskStore.upgrade, revision)

    async def schema_version(self) -> int:
        return await self._call(TaskStore.schema_version)

    @property
    def metrics(self) -> MetricsSnapshot:
        return self._executor.metrics_snapshot()

    def session(self, **kwargs: Any) -> AsyncSession:
        from sqlalchemy.ext.asyncio import AsyncSession
        from sqlalchemy.util import await_only

        from uniqc_store.db.sessions import make_read_only

        kwargs.setdefault("expire_on_commit", False)
        if isinstance(self.engine, Engine):  # SQLite: each statement's unit on the worker
            runner = self._runner

            def on_worker(unit: Callable[[], Any]) -> Any:
                return await_only(runner.call(unit))

            session = AsyncSession(sync_session_class=_bound_session(self.engine), **kwargs)
            make_read_only(session.sync_session, self._executor, on_worker)
            return session
        session = AsyncSession(self.engine, **kwargs)
        make_read_only(session.sync_session, self._executor)
        return session

    def reading(
        self, *, snapshot: bool = False
    ) -> contextlib.AbstractAsyncContextManager[AsyncUnitConnection]:
        return self._block(lambda core: core.reading(snapshot=snapshot))

    def transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncUnitConnection]:
        return self._block(lambda core: core.transaction())

    @contextlib.asynccontextmanager
    async def _block(
        self, opener: Callable[[TaskStore], contextlib.AbstractContextManager[Any]]
    ) -> AsyncIterator[AsyncUnitConnection]:
        self._executor.refuse_nested()
        core = self._core or await self._store()
        async with self._runner.block(lambda: opener(core)) as conn:
            if self.dialect != "sqlite":
                yield conn
                return
            # the block holds the worker: a call of this task inside it is refused at
            # once as nested (it would wait for the block to end)
            with self._executor.inside_unit():
                yield conn

    @contextlib.asynccontextmanager
    async def using(
        self, connection: AsyncConnection | AsyncUnitConnection
    ) -> AsyncIterator[AsyncTaskStore]:
        # Servers: your AsyncConnection (``await session.connection()`` of an
        # AsyncSession); SQLite: the connection of ``store.transaction()``, whose
        # block the bound store's calls then run in.
        runner: Any = self._runner
        if isinstance(connection, AsyncUnitConnection):
            runner = connection.runner  # inside the block, whose unit the sync using() checks
        else:
            self._executor.refuse_nested()
        core = self._core or await self._store()
        sync_connection = connection.sync_connection
        if sync_connection is None:
            raise ValueError("using() needs an open connection: this one is closed")
        unit = core.using(sync_connection)
        bound_core = await runner.call(unit.__enter__)
        bound = copy.copy(self)
        bound._core, bound._executor, bound._runner = bound_core, bound_core._executor, runner
        try:
            yield bound
        except BaseException as exc:
            if not await runner.call(unit.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await runner.call(unit.__exit__, None, None, None)

    async def aclose(self) -> None:
        """Release the connections (and the engine, if the store created it)."""
        if self._closed:
            return
        self._closed = True
        core, self._core = self._core, None
        try:
            if core is not None:
                await self._runner.call(core.close)
            if self._owns_engine:
                if isinstance(self.engine, Engine):
                    await self._runner.call(self.engine.dispose)
                else:
                    await self.engine.dispose()
        finally:
            self._runner.release()

    async def __aenter__(self) -> AsyncTaskStore:
        await self._store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncTaskStore(url={redact(self.url)!r})"

    # -- tasks -----------------------------------------------------------

    async def save(self, task_info: TaskInfo) -> None:
        await self._call(TaskStore.save, task_info)

    async def save_many(self, infos: Iterable[TaskInfo]) -> int:
        return await self._call(TaskStore.save_many, infos)

    async def get(self, task_id: str) -> TaskInfo | None:
        return await self._call(TaskStore.get, task_id)

    async def modify(self, task_id: str, change: Callable[[TaskInfo], object]) -> TaskInfo | None:
        return await self._call(TaskStore.modify, task_id, change)

    async def list(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[TaskInfo]:
        return await self._call(
            TaskStore.list, status=status, backend=backend, limit=limit, offset=offset
        )

    def iter_tasks(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[TaskInfo]:
        walk_params(status, backend, batch_size)
        return _Walk(
            self, "iter_tasks", {"status": status, "backend": backend, "batch_size": batch_size}
        )

    async def count(
        self, *, status: str | TaskStatus | None = None, backend: str | None = None
    ) -> int:
        return await self._call(TaskStore.count, status=status, backend=backend)

    async def tally(
        self,
        *,
        archived: bool = False,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
    ) -> counts.Tally:
        return await self._call(TaskStore.tally, archived=archived, status=status, backend=backend)

    async def delete(self, task_id: str) -> bool:
        return await self._call(TaskStore.delete, task_id)

    async def clear_completed(self, terminal_statuses: Iterable[str] = TERMINAL_STATUSES) -> int:
        return await self._call(TaskStore.clear_completed, terminal_statuses)

    async def clear_all(self) -> None:
        await self._call(TaskStore.clear_all)

    # -- shards ----------------------------------------------------------

    async def save_shard(self, shard: TaskShard) -> None:
        await self._call(TaskStore.save_shard, shard)

    async def save_shards(self, shards: Iterable[TaskShard]) -> int:
        return await self._call(TaskStore.save_shards, shards)

    async def get_shards(self, uniqc_task_id: str) -> builtins.list[TaskShard]:
        return await self._call(TaskStore.get_shards, uniqc_task_id)

    async def get_shard_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> TaskShard | None:
        return await self._call(
            TaskStore.get_shard_by_platform_id, platform_task_id, backend=backend
        )

    async def find_uniqc_id_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> str | None:
        return await self._call(
            TaskStore.find_uniqc_id_by_platform_id, platform_task_id, backend=backend
        )

    async def delete_shards(self, uniqc_task_id: str) -> int:
        return await self._call(TaskStore.delete_shards, uniqc_task_id)

    aggregate_status = staticmethod(TaskStore.aggregate_status)

    # -- archive ---------------------------------------------------------

    async def archive_task(self, task_id: str) -> bool:
        return await self._call(TaskStore.archive_task, task_id)

    async def restore_task(self, task_id: str) -> bool:
        return await self._call(TaskStore.restore_task, task_id)

    async def get_archived(self, task_id: str) -> TaskInfo | None:
        return await self._call(TaskStore.get_archived, task_id)

    async def get_archived_shards(self, task_id: str) -> builtins.list[TaskShard]:
        return await self._call(TaskStore.get_archived_shards, task_id)

    async def list_archived(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[TaskInfo]:
        return await self._call(
            TaskStore.list_archived, status=status, backend=backend, limit=limit, offset=offset
        )

    def iter_archived(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[TaskInfo]:
        walk_params(status, backend, batch_size)
        kwargs = {"status": status, "backend": backend, "batch_size": batch_size}
        return _Walk(self, "iter_archived", kwargs)

    async def count_archived(
        self, *, status: str | TaskStatus | None = None, backend: str | None = None
    ) -> int:
        return await self._call(TaskStore.count_archived, status=status, backend=backend)

    async def delete_archived(self, task_id: str) -> bool:
        return await self._call(TaskStore.delete_archived, task_id)

    async def archive_expired(
        self, hours: float = 72, terminal_only: bool = True
    ) -> dict[str, Any]:
        return await self._call(TaskStore.archive_expired, hours, terminal_only)

    async def purge_archived(
        self,
        *,
        older_than_hours: float,
        keep_last: int = 0,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> archive.PurgeReport:
        return await self._call(
            TaskStore.purge_archived,
            older_than_hours=older_than_hours,
            keep_last=keep_last,
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress,
        )

    # -- pages and many at once --------------------------------------------

    async def list_page(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return await self._call(
            TaskStore.list_page, status=status, backend=backend, limit=limit, cursor=cursor
        )

    async def list_archived_page(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return await self._call(
            TaskStore.list_archived_page,
            status=status,
            backend=backend,
            limit=limit,
            cursor=cursor,
        )

    async def archive_many(self, task_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        return await self._call(TaskStore.archive_many, task_ids)

    async def delete_many(self, task_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        return await self._call(TaskStore.delete_many, task_ids)

    async def expired_task_ids(
        self, hours: float = 72, terminal_only: bool = True
    ) -> builtins.list[str]:
        return await self._call(TaskStore.expired_task_ids, hours, terminal_only)


def _share_docstrings(cls: type, source: type) -> None:
    """Give each member of ``cls`` without a docstring the one of ``source``'s."""
    for name, member in list(vars(cls).items()):
        original = inspect.getattr_static(source, name, None)
        if isinstance(member, property) and member.__doc__ is None and original is not None:
            setattr(cls, name, property(member.fget, member.fset, member.fdel, original.__doc__))
        elif callable(member) and member.__doc__ is None and original is not None:
            member.__doc__ = original.__doc__


_share_docstrings(AsyncTaskStore, TaskStore)
AsyncTaskStore.aclose.__doc__ = TaskStore.close.__doc__


class _Walk:
    """``iter_tasks`` / ``iter_archived`` for ``async for``: the arguments were checked
    when it was made; the first step opens the store if needed, then the sync walk
    runs ``batch_size`` items per hop. Nothing is held between batches, so leaving
    the loop early leaves nothing open."""

    def __init__(self, store: AsyncTaskStore, name: str, kwargs: dict[str, Any]) -> None:
        self._store, self._name, self._kwargs = store, name, kwargs
        self._inner: AsyncIterator[TaskInfo] | None = None

    def __aiter__(self) -> _Walk:
        return self

    async def __anext__(self) -> TaskInfo:
        if self._inner is None:
            store = self._store
            core = store._core or await store._store()
            walk = getattr(core, self._name)(**self._kwargs)
            self._inner = async_bridge.iterate(store._runner, walk, self._kwargs["batch_size"])
        return await self._inner.__anext__()

    async def aclose(self) -> None:
        """Stop the walk."""
        if self._inner is not None:
            await self._inner.aclose()  # type: ignore[attr-defined]


def _bound_session(engine: Engine) -> type:
    """A ``Session`` class bound to ``engine`` (an ``AsyncSession`` on SQLite has no
    ``AsyncEngine`` to bind its sync Session to)."""
    from sqlalchemy.orm import Session

    class BoundSession(Session):
        def __init__(self, bind: Any = None, **kwargs: Any) -> None:
            super().__init__(bind=bind or engine, **kwargs)

    return BoundSession
