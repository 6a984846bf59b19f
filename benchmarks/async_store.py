"""``python -m benchmarks.async_store``: ``AsyncTaskStore`` against ``TaskStore``.

Two figures (issue 26 point 7):

1. Per-call latency, one caller: the mean time of ``save``, ``get``, ``count`` and
   ``list(limit=50)`` on the async store (awaited one after the other) against the
   sync store, on a SQLite file and on each server whose URL is set (target: at most
   1.3x on the servers; SQLite's is stated, its calls hop to a worker thread).
2. Throughput on PostgreSQL: calls per second of 64 concurrent tasks on one async
   store against 8 threads on one sync store (each worker saves then reads back a
   task, in a loop, for ``--seconds``; target: async at least 0.9x).

The servers come from ``--postgres`` / ``--mysql`` (default: ``UNIQC_TEST_POSTGRES_URL``
/ ``UNIQC_TEST_MYSQL_URL``, sync URLs); each run makes a scratch schema or database
there and drops it afterwards.

    python -m benchmarks.async_store [--calls 300] [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any

from sqlalchemy import URL, make_url, text

from uniqc_store import AsyncTaskStore, TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine

ASYNC_DRIVER = {"postgresql": "psycopg_async", "mysql": "aiomysql", "mariadb": "aiomysql"}
OPERATIONS = ("save", "get", "count", "list50")


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


def latency(url: URL, calls: int, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Mean microseconds per call of each operation, sync and async (median of
    ``repeats`` runs, the two taking turns)."""
    figures: dict[str, dict[str, list[float]]] = {
        op: {"sync": [], "async": []} for op in OPERATIONS
    }
    sync_store = TaskStore(url=url, auto_migrate=True)
    loop = asyncio.new_event_loop()
    async_store = AsyncTaskStore(url=as_async(url))
    loop.run_until_complete(async_store.__aenter__())
    try:
        for repeat in range(repeats):
            sync_ops = sync_calls(sync_store, repeat, "s")
            async_ops = async_calls(async_store, repeat, "a")
            for op in OPERATIONS:
                started = time.perf_counter()
                for i in range(calls):
                    sync_ops[op](i)
                figures[op]["sync"].append((time.perf_counter() - started) / calls * 1e6)

                async def run_async(call: Callable[[int], Awaitable[object]]) -> None:
                    for i in range(calls):
                        await call(i)

                started = time.perf_counter()
                loop.run_until_complete(run_async(async_ops[op]))
                figures[op]["async"].append((time.perf_counter() - started) / calls * 1e6)
    finally:
        sync_store.clear_all()
        sync_store.close()
        loop.run_until_complete(async_store.aclose())
        loop.close()
    return {
        op: {side: statistics.median(values) for side, values in sides.items()}
        for op, sides in figures.items()
    }


def throughput(url: URL, seconds: float, tasks: int = 64, threads: int = 8) -> dict[str, float]:
    """Calls per second: ``tasks`` coroutines on one async store against ``threads``
    threads on one sync store, each saving a task and reading it back in a loop."""
    sync_store = TaskStore(url=url, auto_migrate=True, engine_options={"pool_size": threads})
    done = [0] * threads

    def thread_work(n: int, stop: float) -> None:
        i = 0
        while time.monotonic() < stop:
            sync_store.save(task(f"uqt_t_{n}_{i}"))
            sync_store.get(f"uqt_t_{n}_{i}")
            done[n] += 2
            i += 1

    stop = time.monotonic() + seconds
    workers = [threading.Thread(target=thread_work, args=(n, stop)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sync_rate = sum(done) / seconds
    sync_store.clear_all()
    sync_store.close()

    async def main() -> float:
        options = {"pool_size": 8, "max_overflow": tasks}
        async with AsyncTaskStore(url=as_async(url), engine_options=options) as store:
            counts = [0] * tasks
            stop = time.monotonic() + seconds

            async def work(n: int) -> None:
                i = 0
                while time.monotonic() < stop:
                    await store.save(task(f"uqt_a_{n}_{i}"))
                    await store.get(f"uqt_a_{n}_{i}")
                    counts[n] += 2
                    i += 1

            await asyncio.gather(*(work(n) for n in range(tasks)))
            await store.clear_all()
            return sum(counts) / seconds

    async_rate = asyncio.run(main())
    return {"sync_calls_per_s": sync_rate, "async_calls_per_s": async_rate}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="calls per run and operation")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a throughput run")
    parser.add_argument("--postgres", help="a sync PostgreSQL URL (a scratch schema is made)")
    parser.add_argument("--mysql", help="a sync MySQL/MariaDB URL (a scratch database is made)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"latency_us": {}, "throughput": None}
    with tempfile.TemporaryDirectory() as directory:
        sqlite = URL.create("sqlite+pysqlite", database=str(Path(directory) / "tasks.sqlite"))
        report["latency_us"]["sqlite"] = latency(sqlite, args.calls)
    for name, url in servers(args).items():
        with scratch(url) as database:
            report["latency_us"][name] = latency(database, args.calls)
            if name == "postgresql":
                report["throughput"] = throughput(database, args.seconds)
    print(f"{'engine':<11} {'call':<7} {'sync us':>9} {'async us':>9} {'ratio':>6}  target")
    for engine, ops in report["latency_us"].items():
        for op, sides in ops.items():
            ratio = sides["async"] / sides["sync"]
            target = "stated" if engine == "sqlite" else "<= 1.3"
            print(
                f"{engine:<11} {op:<7} {sides['sync']:>9.1f} {sides['async']:>9.1f} "
                f"{ratio:>6.2f}  {target}"
            )
    rates = report["throughput"]
    if rates is not None:
        ratio = rates["async_calls_per_s"] / rates["sync_calls_per_s"]
        print(
            f"postgresql throughput: 8 threads {rates['sync_calls_per_s']:.0f}/s, 64 tasks "
            f"{rates['async_calls_per_s']:.0f}/s, ratio {ratio:.2f} (target >= 0.9)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
