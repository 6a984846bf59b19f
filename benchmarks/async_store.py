"""``python -m benchmarks.async_store``: ``AsyncTaskStore`` against ``TaskStore``.

Three figures (issue 26 point 7):

1. Per-call latency, one caller: the mean time of ``save``, ``get``, ``count`` and
   ``list(limit=50)`` on the async store (awaited one after the other) against the
   sync store, on a SQLite file and on each server whose URL is set (target: at most
   1.3x on the servers; SQLite's is stated, its calls hop to a worker thread). Both
   stores live in one process and take turns in every round, so a change of the
   machine's load hits both; the CPU per call is printed beside the wall time (on a
   shared machine it moves less).
2. The floor under those ratios: the same connection, ``SELECT 1`` and check-in run
   through the bridge (one ``greenlet_spawn`` on an ``AsyncEngine``'s ``sync_engine``)
   and on a sync engine, with no store code at all; on SQLite the hop to the worker
   thread and back. What the async drivers and SQLAlchemy's adapters cost per round
   trip is there, and no change of the store's can take it away.
3. Throughput on PostgreSQL: calls per second of 64 concurrent tasks on one async
   store against 8 threads on one sync store (each worker saves then reads back a
   task, in a loop, for ``--seconds``; target: async at least 0.9x), with the client's
   CPU (1.0: one core busy).

The servers come from ``--postgres`` / ``--mysql`` (default: ``UNIQC_TEST_POSTGRES_URL``
/ ``UNIQC_TEST_MYSQL_URL``, sync URLs); each run makes a scratch schema or database
there and drops it afterwards.

    python -m benchmarks.async_store [--calls 300] [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from uniqc_store import AsyncTaskStore, TaskInfo, TaskStore
from uniqc_store.db.async_bridge import SqliteWorker
from uniqc_store.db.engine import create_store_engine

ASYNC_DRIVER = {"postgresql": "psycopg_async", "mysql": "aiomysql", "mariadb": "aiomysql"}
OPERATIONS = ("save", "get", "count", "list50")
T = TypeVar("T")


def as_async(url: URL) -> URL:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url
    return url.set(drivername=f"{backend}+{ASYNC_DRIVER[backend]}")


@contextmanager
def scratch(url: URL) -> Iterator[URL]:
    """A fresh schema (PostgreSQL) or database (MySQL) on the server at ``url``."""
    name = f"uqt_bench_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    postgres = url.get_backend_name() == "postgresql"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"' if postgres else f"CREATE DATABASE `{name}`"))
    try:
        if postgres:
            yield url.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            yield url.set(database=name)
    finally:
        with admin.connect() as conn:
            drop = f'DROP SCHEMA "{name}" CASCADE' if postgres else f"DROP DATABASE `{name}`"
            conn.execute(text(drop))
        admin.dispose()


def task(task_id: str) -> TaskInfo:
    return TaskInfo(task_id=task_id, backend="b", status="success", result={"counts": {"0": 1}})


def sync_calls(store: TaskStore, n: int, tag: str) -> dict[str, Callable[[int], object]]:
    return {
        "save": lambda i: store.save(task(f"uqt_{tag}_{n}_{i}")),
        "get": lambda i: store.get(f"uqt_{tag}_{n}_{i % 50}"),
        "count": lambda i: store.count(),
        "list50": lambda i: store.list(limit=50),
    }


def async_calls(
    store: AsyncTaskStore, n: int, tag: str
) -> dict[str, Callable[[int], Awaitable[object]]]:
    return {
        "save": lambda i: store.save(task(f"uqt_{tag}_{n}_{i}")),
        "get": lambda i: store.get(f"uqt_{tag}_{n}_{i % 50}"),
        "count": lambda i: store.count(),
        "list50": lambda i: store.list(limit=50),
    }


def run_in(
    loop: asyncio.AbstractEventLoop, coroutine: Callable[..., Awaitable[T]], *args: Any
) -> T:
    return loop.run_until_complete(coroutine(*args))


def latency(url: URL, calls: int, rounds: int = 7) -> dict[str, dict[str, float]]:
    """Mean microseconds per call of each operation, sync and async: the median of
    ``rounds`` rounds in one process, the two sides taking turns within each round
    (which goes first alternates), so a change in the machine's load hits both."""
    figures: dict[str, dict[str, list[float]]] = {
        op: {"sync": [], "async": [], "sync_cpu": [], "async_cpu": []} for op in OPERATIONS
    }
    sync_store = TaskStore(url=url, auto_migrate=True)
    loop = asyncio.new_event_loop()
    async_store = AsyncTaskStore(url=as_async(url))
    loop.run_until_complete(async_store.__aenter__())

    async def run_async(call: Callable[[int], Awaitable[object]]) -> None:
        for i in range(calls):
            await call(i)

    def run_sync(call: Callable[[int], object]) -> None:
        for i in range(calls):
            call(i)

    try:
        for repeat in range(rounds):
            sync_ops = sync_calls(sync_store, repeat, "s")
            async_ops = async_calls(async_store, repeat, "a")
            for op in OPERATIONS:
                sync_op, async_op = sync_ops[op], async_ops[op]
                sides: list[tuple[str, Callable[[], object]]] = [
                    ("sync", functools.partial(run_sync, sync_op)),
                    ("async", functools.partial(run_in, loop, run_async, async_op)),
                ]
                for side, run in sides if repeat % 2 == 0 else reversed(sides):
                    started, cpu = time.perf_counter(), time.process_time()
                    run()
                    figures[op][side].append((time.perf_counter() - started) / calls * 1e6)
                    figures[op][f"{side}_cpu"].append((time.process_time() - cpu) / calls * 1e6)
    finally:
        sync_store.clear_all()
        sync_store.close()
        loop.run_until_complete(async_store.aclose())
        loop.close()
    return {
        op: {side: statistics.median(values) for side, values in sides.items()}
        for op, sides in figures.items()
    }


def throughput(
    url: URL, seconds: float, tasks: int = 64, threads: int = 8, rounds: int = 3
) -> dict[str, float]:
    """Calls per second: ``tasks`` coroutines on one async store against ``threads``
    threads on one sync store, each saving a task and reading it back in a loop; the
    median of ``rounds`` runs of ``seconds`` each, the two sides taking turns. Both
    pools hold as many connections as the side has callers at once (``engine_options``:
    the sync side's ``threads``, the async side's ``pool_size``, which is also how
    many of its calls run at once)."""
    sync_store = TaskStore(url=url, auto_migrate=True, engine_options={"pool_size": threads})
    loop = asyncio.new_event_loop()
    async_store = AsyncTaskStore(
        url=as_async(url), engine_options={"pool_size": threads, "max_overflow": tasks}
    )
    loop.run_until_complete(async_store.__aenter__())
    figures: dict[str, list[float]] = {"sync": [], "async": [], "sync_cpu": [], "async_cpu": []}

    def run_sync(tag: str) -> int:
        done = [0] * threads
        stop = time.monotonic() + seconds

        def thread_work(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                sync_store.save(task(f"uqt_{tag}_{n}_{i}"))
                sync_store.get(f"uqt_{tag}_{n}_{i}")
                done[n] += 2
                i += 1

        workers = [threading.Thread(target=thread_work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return sum(done)

    async def run_async(tag: str) -> int:
        done = [0] * tasks
        stop = time.monotonic() + seconds

        async def work(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                await async_store.save(task(f"uqt_{tag}_{n}_{i}"))
                await async_store.get(f"uqt_{tag}_{n}_{i}")
                done[n] += 2
                i += 1

        await asyncio.gather(*(work(n) for n in range(tasks)))
        return sum(done)

    try:
        for repeat in range(rounds):
            sides: list[tuple[str, Callable[[str], int]]] = [
                ("sync", run_sync),
                ("async", lambda tag: loop.run_until_complete(run_async(tag))),
            ]
            for side, run in sides if repeat % 2 == 0 else reversed(sides):
                started, cpu = time.perf_counter(), time.process_time()
                calls = run(f"t{repeat}{side[0]}")
                elapsed = time.perf_counter() - started
                figures[side].append(calls / elapsed)
                # the client's CPU: seconds of CPU per second (1.0: one core busy)
                figures[f"{side}_cpu"].append((time.process_time() - cpu) / elapsed)
    finally:
        sync_store.clear_all()
        sync_store.close()
        loop.run_until_complete(async_store.aclose())
        loop.close()
    medians = {side: statistics.median(values) for side, values in figures.items()}
    return {
        "sync_calls_per_s": medians["sync"],
        "async_calls_per_s": medians["async"],
        "sync_cpu_share": medians["sync_cpu"],
        "async_cpu_share": medians["async_cpu"],
    }


def floor(url: URL, calls: int, rounds: int = 7) -> dict[str, float]:
    """The least a call through the async store costs over its sync twin, with no store
    code around it: on servers one unit of ``SELECT 1`` (a pooled connection, the
    statement, the connection back; PostgreSQL in autocommit, as the store's reads) run
    by one ``greenlet_spawn`` on an ``AsyncEngine``'s ``sync_engine`` (what the bridge
    does) against the same code on a sync engine; on SQLite the hop to the worker thread
    and back around a call that does nothing, against the call. Wall and CPU
    microseconds, the two sides taking turns over ``rounds`` rounds."""
    loop = asyncio.new_event_loop()
    figures: dict[str, list[float]] = {"sync": [], "async": [], "sync_cpu": [], "async_cpu": []}
    engines: list[Any] = []
    if url.get_backend_name() == "sqlite":
        worker = SqliteWorker()

        def nothing() -> None:
            return None

        sync_call: Callable[[], None] = nothing

        async def async_call() -> None:
            await worker.call(nothing)

    else:
        sync_engine = create_engine(url)
        async_engine = create_async_engine(as_async(url))
        engines = [sync_engine, async_engine]
        autocommit = url.get_backend_name() == "postgresql"

        def unit(engine: Any) -> None:
            with engine.connect() as conn:
                if autocommit:
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text("SELECT 1")).all()

        sync_call = functools.partial(unit, sync_engine)

        async def async_call() -> None:
            await greenlet_spawn(unit, async_engine.sync_engine)

    async def many_async() -> None:
        for _ in range(calls):
            await async_call()

    def many_sync() -> None:
        for _ in range(calls):
            sync_call()

    try:
        for repeat in range(rounds + 1):  # the first round warms the pools up
            sides: list[tuple[str, Callable[[], object]]] = [
                ("sync", many_sync),
                ("async", lambda: loop.run_until_complete(many_async())),
            ]
            for side, run in sides if repeat % 2 == 0 else reversed(sides):
                started, cpu = time.perf_counter(), time.process_time()
                run()
                if repeat:
                    figures[side].append((time.perf_counter() - started) / calls * 1e6)
                    figures[f"{side}_cpu"].append((time.process_time() - cpu) / calls * 1e6)
    finally:
        for engine in engines:
            if isinstance(engine, AsyncEngine):
                loop.run_until_complete(engine.dispose())
            else:
                engine.dispose()
        loop.close()
    return {side: statistics.median(values) for side, values in figures.items()}


def servers(args: argparse.Namespace) -> dict[str, URL]:
    found = {}
    for name, given, variable in (
        ("postgresql", args.postgres, "UNIQC_TEST_POSTGRES_URL"),
        ("mysql", args.mysql, "UNIQC_TEST_MYSQL_URL"),
    ):
        raw = given or os.environ.get(variable)
        if raw:
            found[name] = make_url(raw)
    return found


def ratio(value: float, base: float) -> str:
    """``value / base`` to two places, or "-" when ``base`` is next to nothing (SQLite's
    floor: a call that does nothing, against its hop to the worker)."""
    return f"{value / base:.2f}" if base >= 1.0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="calls per run and operation")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a throughput run")
    parser.add_argument("--postgres", help="a sync PostgreSQL URL (a scratch schema is made)")
    parser.add_argument("--mysql", help="a sync MySQL/MariaDB URL (a scratch database is made)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"latency_us": {}, "floor_us": {}, "throughput": None}
    report["load_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        sqlite = URL.create("sqlite+pysqlite", database=str(Path(directory) / "tasks.sqlite"))
        report["latency_us"]["sqlite"] = latency(sqlite, args.calls)
        report["floor_us"]["sqlite"] = floor(sqlite, args.calls)
    for name, url in servers(args).items():
        with scratch(url) as database:
            report["latency_us"][name] = latency(database, args.calls)
            report["floor_us"][name] = floor(database, args.calls)
            if name == "postgresql":
                report["throughput"] = throughput(database, args.seconds)
    report["load_after"] = os.getloadavg()
    print(
        f"{'engine':<11} {'call':<7} {'sync us':>8} {'async us':>8} {'ratio':>6} "
        f"{'sync cpu':>8} {'async cpu':>9} {'ratio':>6}  target"
    )
    for engine, ops in report["latency_us"].items():
        rows = {**ops, "floor": report["floor_us"][engine]}
        for op, sides in rows.items():
            target = "stated" if engine == "sqlite" or op == "floor" else "<= 1.3"
            print(
                f"{engine:<11} {op:<7} {sides['sync']:>8.1f} {sides['async']:>8.1f} "
                f"{ratio(sides['async'], sides['sync']):>6} {sides['sync_cpu']:>8.1f} "
                f"{sides['async_cpu']:>9.1f} {ratio(sides['async_cpu'], sides['sync_cpu']):>6}"
                f"  {target}"
            )
    rates = report["throughput"]
    if rates is not None:
        share = rates["async_calls_per_s"] / rates["sync_calls_per_s"]
        print(
            f"postgresql throughput: 8 threads {rates['sync_calls_per_s']:.0f}/s "
            f"(client CPU {rates['sync_cpu_share']:.2f}), 64 tasks "
            f"{rates['async_calls_per_s']:.0f}/s (client CPU {rates['async_cpu_share']:.2f}), "
            f"ratio {share:.2f} (target >= 0.9)"
        )
    print(
        "load average before / after: "
        + " / ".join(
            ", ".join(f"{x:.2f}" for x in report[key]) for key in ("load_before", "load_after")
        )
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
