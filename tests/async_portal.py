"""The store contract over ``AsyncTaskStore``: a sync-looking store whose every call is
the async store's, run on an event loop in another thread (anyio's ``BlockingPortal``).

A test of the contract written for ``TaskStore`` runs unchanged over it (the
``*-async`` variants of ``tests/conftest.py``): the same arguments in, the same
results and errors out, with the async store's own machinery in between (the
greenlet bridge on servers, the worker thread on SQLite).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy import URL, Connection, Engine

from uniqc_store import AsyncTaskStore, TaskStore
from uniqc_store.db.engine import SYNC_DRIVER, create_store_engine
from uniqc_store.records import TaskInfo

#: The async URL of each backend's sync one.
ASYNC_DRIVER = {"postgresql": "psycopg_async", "mysql": "aiomysql", "mariadb": "aiomysql"}


def async_url(url: URL) -> URL:
    """The async store's URL for a test database (SQLite's stays as it is)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url
    return url.set(drivername=f"{backend}+{ASYNC_DRIVER[backend]}")


class PortalStore:
    """``TaskStore``'s API, each call awaited on ``AsyncTaskStore`` through a portal.

    ``engine`` is a sync engine on the same database, for the tests' own reads and
    writes beside the store (on SQLite the store's own engine, as a test of
    ``TaskStore`` would use it), and ``url`` its URL, for the CLI a test runs.
    """

    def __init__(self, portal: BlockingPortal, url: URL, **kwargs: Any) -> None:
        self._portal = portal
        self.async_store = AsyncTaskStore(url=async_url(url), **kwargs)
        portal.call(self.async_store.__aenter__)
        sync = self.async_store.engine
        self._own_engine = not isinstance(sync, Engine)
        self.engine: Engine = (
            create_store_engine(sync_url(url)) if self._own_engine else sync  # type: ignore[assignment]
        )
        self.url = sync_url(self.async_store.url)  # for the sync tools a test runs beside
        self.dialect = self.async_store.dialect
        self.db_path = self.async_store.db_path
        self.cache_dir = self.async_store.cache_dir

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.async_store, name)
        if inspect.iscoroutinefunction(found):
            return functools.partial(self._run, found)
        return found

    def _run(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._portal.call(functools.partial(method, *args, **kwargs))

    aggregate_status = staticmethod(TaskStore.aggregate_status)

    def iter_tasks(self, **kwargs: Any) -> Iterator[TaskInfo]:
        return self._walk(self.async_store.iter_tasks(**kwargs))

    def iter_archived(self, **kwargs: Any) -> Iterator[TaskInfo]:
        return self._walk(self.async_store.iter_archived(**kwargs))

    def _walk(self, walk: Any) -> Iterator[TaskInfo]:
        async def step() -> tuple[bool, Any]:
            try:
                return True, await walk.__anext__()
            except StopAsyncIteration:
                return False, None

        def items() -> Iterator[TaskInfo]:
            try:
                while True:
                    more, item = self._portal.call(step)
                    if not more:
                        return
                    yield item
            finally:
                self._portal.call(walk.aclose)

        return items()

    @contextlib.contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[Any]:
        with self._portal.wrap_async_context_manager(
            self.async_store.reading(snapshot=snapshot)
        ) as unit:
            yield _PortalUnit(self._portal, unit)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._portal.wrap_async_context_manager(self.async_store.transaction()) as unit:
            yield _PortalUnit(self._portal, unit)

    def close(self) -> None:
        self._portal.call(self.async_store.aclose)
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> PortalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PortalUnit:
    """A block's connection with ``Connection``'s calls, each awaited through the portal."""

    def __init__(self, portal: BlockingPortal, unit: Any) -> None:
        self._portal, self._unit = portal, unit

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._portal.call(self._unit.execute, statement, parameters)

    def exec_driver_sql(self, sql: str, parameters: Any = None) -> Any:
        return self._portal.call(self._unit.exec_driver_sql, sql, parameters)

    def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._portal.call(self._unit.scalar, statement, parameters)

    @property
    def sync_connection(self) -> Connection:
        return self._unit.sync_connection  # type: ignore[no-any-return]


def sync_url(url: URL) -> URL:
    driver = SYNC_DRIVER.get(url.get_driver_name())
    return url if driver is None else url.set(drivername=f"{url.get_backend_name()}+{driver}")


@contextlib.contextmanager
def portal_store(url: URL, **kwargs: Any) -> Iterator[PortalStore]:
    """A ``PortalStore`` on ``url`` with its own event loop thread, closed afterwards."""
    with start_blocking_portal() as portal:
        store = PortalStore(portal, url, **kwargs)
        try:
            yield store
        finally:
            store.close()
