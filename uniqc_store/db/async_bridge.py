"""How the async store reaches the database without blocking the event loop.

The async store (``repository/async_store.py``) runs the sync store's own code:
one set of statements, checks, moves, retries and error rules. What differs is
only *where* that code runs, and this module holds both places:

- **Servers** (``postgresql+psycopg_async://``, ``mysql+aiomysql://``): an
  ``AsyncEngine`` whose ``sync_engine`` the sync machinery uses as any engine.
  Each call runs inside SQLAlchemy's greenlet bridge (``greenlet_spawn``), so
  every driver round trip is awaited on the loop while the code between them is
  the sync store's (:class:`GreenletRunner`). The executor's back-off between
  attempts sleeps with ``asyncio.sleep`` there (``executor.calls_run_with``).
- **SQLite**: one worker thread per engine (:class:`SqliteWorker`) runs every
  call of every async store on it, on the executor's held connection: ``BEGIN
  IMMEDIATE``, the direct path and fork handling stay what they are. A caller
  that is cancelled while its call runs there has the call rolled back before
  its COMMIT (``executor.calls_run_with(before_commit=...)``).

Per-call state (nesting, bulk, the door) is ``ContextVar``\\ s: a greenlet of the
bridge shares its task's context and a worker job runs in a copy of it, so two
tasks on one loop never see each other's.

This module imports ``sqlalchemy.ext.asyncio``: only the async store imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import URL, Connection, Engine, Executable
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only, greenlet_spawn

from uniqc_store.db import door
from uniqc_store.db.dialects import is_mysql
from uniqc_store.db.drivers import watch_for_galera
from uniqc_store.db.engine import (
    BRIDGED_KEY,
    create_store_engine,
    is_async_url,
    server_engine_options,
    store_engine,
)
from uniqc_store.db.executor import calls_run_with
from uniqc_store.db.urls import parse_url, redact, resolve_url
from uniqc_store.errors import DatabaseBusyError, DriverNotInstalledError
from uniqc_store.timeouts import Timeouts

T = TypeVar("T")

#: The async drivers the async store runs on, by backend.
ASYNC_DRIVERS = {"postgresql": "psycopg_async", "mysql": "aiomysql", "mariadb": "aiomysql"}
#: Execution options of a statement run in an async block: its rows (and rowcount) are
#: read before the result leaves the worker thread or the greenlet.
_BUFFERED = {"prebuffer_rows": True, "preserve_rowcount": True}


def async_store_engine(
    url: str | URL | None,
    cache_dir: Any,
    engine: Any,
    *,
    synchronous: str,
    timeouts: Timeouts,
    options: dict[str, Any] | None,
) -> tuple[URL, Engine | AsyncEngine, bool]:
    """The URL, the engine (a sync one for SQLite, an ``AsyncEngine`` for servers) and
    whether the store owns it, for ``AsyncTaskStore(...)``; a URL or engine the async
    store cannot use is refused at once, naming the class or URL that can."""
    if engine is not None:
        return _given_engine(engine, synchronous, timeouts)
    resolved = resolve_url(url, cache_dir)
    if resolved.get_backend_name() == "sqlite":
        sync_url = resolved.set(drivername="sqlite+pysqlite")  # aiosqlite's file, our worker
        made = create_store_engine(
            sync_url, synchronous=synchronous, **_with_timeouts(options, timeouts)
        )
        return sync_url, made, True
    return resolved, create_async_store_engine(resolved, timeouts, options or {}), True


def _with_timeouts(options: dict[str, Any] | None, timeouts: Timeouts) -> dict[str, Any]:
    return {**(options or {}), "timeouts": timeouts}


def _given_engine(
    engine: Any, synchronous: str, timeouts: Timeouts
) -> tuple[URL, Engine | AsyncEngine, bool]:
    if isinstance(engine, AsyncEngine):
        if engine.dialect.name == "sqlite":
            raise TypeError(
                f"AsyncTaskStore runs SQLite on a worker thread of its own, not on "
                f"{engine.url.drivername}: give it url= or a sqlalchemy.create_engine() engine"
            )
        _check_async_url(engine.url)
        bridge(engine)
        return engine.url, engine, False
    if isinstance(engine, Engine) and engine.dialect.name != "sqlite":
        raise TypeError(
            f"engine is a sync {engine.dialect.name} engine: use uniqc_store.TaskStore with it, "
            f"or give AsyncTaskStore create_async_engine() on a "
            f"{_async_scheme(engine.url)} URL"
        )
    url, made, _owned = store_engine(
        None, None, engine, synchronous=synchronous, timeouts=timeouts, options=None
    )
    return url, made, False


def _async_scheme(url: URL) -> str:
    backend = url.get_backend_name()
    return f"{backend}+{ASYNC_DRIVERS.get(backend, '<async driver>')}://"


def _check_async_url(url: URL) -> None:
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if ASYNC_DRIVERS.get(backend) == driver:
        return
    if backend in ASYNC_DRIVERS and not is_async_url(url):
        raise ValueError(
            f"{url.drivername}:// is a sync driver: use uniqc_store.TaskStore with it, or give "
            f"AsyncTaskStore a {_async_scheme(url)} URL"
        )
    raise ValueError(
        f"AsyncTaskStore runs on sqlite://, postgresql+psycopg_async:// and mysql+aiomysql:// "
        f"(or mariadb+aiomysql://), not {url.drivername}://"
    )


#: The ``pool_size`` of an engine the async store makes (``engine_options`` may say
#: otherwise): how many of its calls run in the bridge at once (:func:`calls_in_bridge`).
#: Each of them may hold the loop for a slice of its work between two round trips, so
#: this bounds the loop's lag; more gives more throughput at a higher lag (README
#: "Async" has both, measured). The sync default (10) held a 1 ms ticker 26-32 ms at
#: p99 in the loop-lag test on a loaded 2-core machine, 4 stays within its bounds.
ASYNC_POOL_SIZE = 4


def create_async_store_engine(url: URL, timeouts: Timeouts, kwargs: dict[str, Any]) -> AsyncEngine:
    """``create_async_engine`` with the store's server defaults (``server_engine_options``),
    guarded by the one door and marked as driven through the bridge."""
    url = parse_url(url)
    _check_async_url(url)
    if kwargs.get("poolclass") is None:
        kwargs = {"pool_size": ASYNC_POOL_SIZE, **kwargs}
    url, options = server_engine_options(url, timeouts, kwargs)
    try:
        engine = create_async_engine(url, **options)
    except ModuleNotFoundError as exc:
        raise DriverNotInstalledError(
            f"the {url.get_backend_name()} driver {url.get_driver_name()!r} of {redact(url)} "
            f"is not installed ({exc}); install it: pip install 'uniqc-store[async]'"
        ) from exc
    if is_mysql(url.get_backend_name()):
        watch_for_galera(engine.sync_engine)
    bridge(engine)
    return engine


def bridge(engine: AsyncEngine) -> None:
    """Let the sync machinery use ``engine.sync_engine`` (its calls run in the bridge)."""
    door.guard(engine.sync_engine)
    setattr(engine.sync_engine.dialect, BRIDGED_KEY, True)


def sync_engine_of(engine: Engine | AsyncEngine) -> Engine:
    """The engine the sync store runs on."""
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


def _loop_sleep(seconds: float) -> None:
    """The executor's back-off pause inside the bridge: the loop runs meanwhile."""
    await_only(asyncio.sleep(seconds))


class Runner(Protocol):
    """Where the calls of an async store run."""

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...

    def block(
        self, opener: Callable[[], contextlib.AbstractContextManager[Connection]]
    ) -> contextlib.AbstractAsyncContextManager[AsyncUnitConnection]: ...

    def release(self) -> None: ...


def _bridged(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    with calls_run_with(pause=_loop_sleep):
        return fn(*args, **kwargs)


#: How many calls of an async server store run in the bridge at once when its pool
#: has no size to go by (``NullPool``, or ``pool_size=0`` with unbounded overflow).
CALLS_WITHOUT_POOL_SIZE = ASYNC_POOL_SIZE


def calls_in_bridge(pool: Any) -> int:
    """How many calls of one async server store run in the bridge at once: the pool's
    ``pool_size`` (``engine_options`` sizes it), the others waiting their turn in order.

    As many as the pool keeps connections, so the calls in the bridge never queue in
    the pool, whose queue is not fair to asyncio waiters (a caller can miss every
    connection given back until ``pool_timeout``) and never open overflow connections
    one by one. Not more: the sync store's work between two round trips runs on the
    loop, so this also bounds how long a coroutine that is ready waits for the loop
    (about this many slices of a call's own work: ``ASYNC_POOL_SIZE``). It was a
    fixed 4 whatever the pool: 64 tasks on an 8-connection pool then made half the
    PostgreSQL calls per second they make with 8 at once (``benchmarks/async_store.py``)."""
    size = int(pool.size()) if hasattr(pool, "size") else 0
    if size <= 0:
        overflow = int(getattr(pool, "_max_overflow", -1))
        size = overflow if overflow > 0 else CALLS_WITHOUT_POOL_SIZE
    return max(1, size)


class GreenletRunner:
    """Servers: each call runs in SQLAlchemy's greenlet bridge, on the event loop, at
    most :func:`calls_in_bridge` at once, in order of arrival; a call that waited
    ``pool_timeout`` for its turn is ``DatabaseBusyError`` as a call that waited that
    long for a pooled connection is."""

    def __init__(self, engine: AsyncEngine) -> None:
        pool: Any = engine.sync_engine.pool
        self._turns = asyncio.Semaphore(calls_in_bridge(pool))
        self._wait_s: float = float(getattr(pool, "_timeout", 30.0))
        self._url = engine.url

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        try:
            if self._turns.locked():  # wait for a turn, bounded (wait_for costs a task)
                await asyncio.wait_for(self._turns.acquire(), self._wait_s)
            else:
                await self._turns.acquire()
        except asyncio.TimeoutError:
            raise DatabaseBusyError(
                f"calls to the task database at {redact(self._url)} waited more than "
                f"{self._wait_s:g} s (pool_timeout) for their turn: the calls before them "
                "took that long; send fewer calls at once or raise pool_timeout "
                "(engine_options). Nothing was written."
            ) from None
        try:
            result: T = await greenlet_spawn(_bridged, fn, args, kwargs)
        finally:
            self._turns.release()
        return result

    @contextlib.asynccontextmanager
    async def block(
        self, opener: Callable[[], contextlib.AbstractContextManager[Connection]]
    ) -> AsyncIterator[AsyncUnitConnection]:
        """A unit of the executor as an ``async with`` block: entered and left in the
        bridge (its ContextVars are the task's), its statements each in the bridge."""
        unit = opener()
        conn = await self.call(unit.__enter__)
        try:
            yield AsyncUnitConnection(conn, self)
        except BaseException as exc:
            if not await self.call(unit.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await self.call(unit.__exit__, None, None, None)

    def release(self) -> None:
        """Nothing is held."""


class _Abandoned(BaseException):
    """Raised before COMMIT in a worker job whose caller was cancelled: rolls it back."""


class _BlockLeft(Exception):
    """Sent into a block's worker job when its ``async with`` body raised: roll back."""


def _in_worker(
    abandoned: threading.Event, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    def before_commit() -> None:
        if abandoned.is_set():
            raise _Abandoned("the caller was cancelled: rolled back")

    with calls_run_with(before_commit=before_commit):
        return fn(*args, **kwargs)


async def _outcome(job: Future[T], abandoned: threading.Event) -> T:
    """The job's result; if the awaiting task is cancelled, the job is dropped (not
    started yet) or rolled back before its COMMIT, and waited for, then the
    cancellation goes on."""
    waiter = asyncio.wrap_future(job)
    try:
        return await asyncio.shield(waiter)
    except asyncio.CancelledError:
        abandoned.set()
        job.cancel()
        with contextlib.suppress(BaseException):  # its outcome is the cancellation's
            await waiter
        raise


class SqliteWorker:
    """The one thread that runs the async stores' calls on one SQLite engine."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="uniqc-store-sqlite")
        self.users = 0

    def _executor(self) -> ThreadPoolExecutor:
        if os.getpid() != self._pid:  # a forked child: the parent's thread is not here
            self._pid, self._pool = os.getpid(), ThreadPoolExecutor(1)
        return self._pool

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn`` on the worker in a copy of the caller's context."""
        return self._executor().submit(contextvars.copy_context().run, fn, *args)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        abandoned = threading.Event()
        return await _outcome(self.submit(_in_worker, abandoned, fn, args, kwargs), abandoned)

    @contextlib.asynccontextmanager
    async def block(
        self, opener: Callable[[], contextlib.AbstractContextManager[Connection]]
    ) -> AsyncIterator[AsyncUnitConnection]:
        """A unit as one worker job that serves the block's statements until it ends, so
        no other call on the engine runs inside it; a body that raises (or is
        cancelled) rolls it back, and a database error in it is the store's."""
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        entered: Future[Connection] = Future()
        job = self.submit(_serve_block, opener, inbox, entered)
        try:
            conn = await asyncio.shield(asyncio.wrap_future(entered))
        except asyncio.CancelledError:  # if it enters, it leaves at once: the worker is free
            inbox.put(_BlockLeft())
            await _left(job)
            raise
        try:
            yield AsyncUnitConnection(conn, _BlockRunner(inbox))
        except BaseException as exc:
            inbox.put(exc if isinstance(exc, SQLAlchemyError) else _BlockLeft())
            await _left(job)
            raise
        inbox.put(None)
        await _left(job)

    def release(self) -> None:
        """One async store fewer on the engine; the thread ends with the last one."""
        self.users -= 1
        if self.users <= 0:
            self._pool.shutdown(wait=False)


async def _left(job: Future[None]) -> None:
    """Wait for the block's job to end (even while being cancelled)."""
    waiter = asyncio.wrap_future(job)
    try:
        await asyncio.shield(waiter)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await waiter
        raise


def _serve_block(
    opener: Callable[[], contextlib.AbstractContextManager[Connection]],
    inbox: queue.SimpleQueue[Any],
    entered: Future[Connection],
) -> None:
    try:
        with opener() as conn:
            entered.set_result(conn)
            while (item := inbox.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                fn, done = item
                try:
                    done.set_result(fn(conn))
                except BaseException as exc:
                    done.set_exception(exc)
    except _BlockLeft:
        return
    except BaseException as exc:
        if not entered.done():
            entered.set_exception(exc)
            return
        raise


class _BlockRunner:
    """Runs a block's statements in its worker job."""

    def __init__(self, inbox: queue.SimpleQueue[Any]) -> None:
        self._inbox = inbox

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        done: Future[T] = Future()
        self._inbox.put((lambda _conn: fn(*args, **kwargs), done))
        return await asyncio.wrap_future(done)


_WORKERS: weakref.WeakKeyDictionary[Any, SqliteWorker] = weakref.WeakKeyDictionary()
_workers_lock = threading.Lock()


def worker_for(engine: Engine) -> SqliteWorker:
    """The engine's worker (made on first use; counted until ``release``)."""
    with _workers_lock:
        worker = _WORKERS.get(engine.dialect)
        if worker is None or worker.users <= 0:
            worker = _WORKERS[engine.dialect] = SqliteWorker()
        worker.users += 1
        return worker


class AsyncUnitConnection:
    """The connection of an async ``reading()`` / ``transaction()`` block.

    Its statements run where the store's calls run (the SQLite worker, or the
    bridge on the event loop), each result read in full before it is returned
    (rows and ``rowcount``): a ``CursorResult`` to use as the sync one.
    ``run_sync(fn)`` runs ``fn(connection)`` with the sync ``Connection``.
    """

    def __init__(self, connection: Connection, runner: Any) -> None:
        self.sync_connection = connection
        #: Where the block's statements run (``AsyncTaskStore.using`` runs calls there).
        self.runner = runner

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        """Run a statement; its result, buffered."""
        conn = self.sync_connection
        result: CursorResult[Any] = await self.runner.call(
            conn.execute, statement, parameters, execution_options=_BUFFERED
        )
        return result

    async def exec_driver_sql(self, sql: str, parameters: Any = None) -> CursorResult[Any]:
        """Run SQL text as the driver takes it; its result, buffered."""
        conn = self.sync_connection
        result: CursorResult[Any] = await self.runner.call(
            conn.exec_driver_sql, sql, parameters, execution_options=_BUFFERED
        )
        return result

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        """The first column of the first row, or None."""
        return (await self.execute(statement, parameters)).scalar()

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on the sync ``Connection``, where the block runs."""
        result: T = await self.runner.call(fn, self.sync_connection, *args)
        return result


def iterate(runner: Runner, walk: Iterator[T], batch: int) -> AsyncIterator[T]:
    """An ``async for`` over a sync walk, ``batch`` items per hop; leaving the loop
    early closes the walk (it holds no cursor between its batches)."""
    return _Walk(runner, walk, batch)


class _Walk:
    __slots__ = ("_batch", "_buffer", "_runner", "_walk")

    def __init__(self, runner: Runner, walk: Iterator[Any], batch: int) -> None:
        self._runner, self._walk, self._batch = runner, walk, batch
        self._buffer: list[Any] = []

    def __aiter__(self) -> _Walk:
        return self

    async def __anext__(self) -> Any:
        if not self._buffer:
            self._buffer = await self._runner.call(_take, self._walk, self._batch)
            self._buffer.reverse()
            if not self._buffer:
                raise StopAsyncIteration
        return self._buffer.pop()

    async def aclose(self) -> None:
        """Stop the walk (what ``break`` out of ``async for`` leads to, through
        ``contextlib.aclosing``, or at garbage collection)."""
        close = getattr(self._walk, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        close = getattr(self._walk, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _take(walk: Iterator[T], count: int) -> list[T]:
    items: list[T] = []
    for item in walk:
        items.append(item)
        if len(items) >= count:
            break
    return items
