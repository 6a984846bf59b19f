"""``python -m benchmarks.retention``: archive_expired (and purge_archived) at scale.

The target (issue 27): at 1M expired tasks, no transaction longer than 1 s, and a
concurrent ``save`` p99 under 50 ms while ``archive_expired`` runs.

It seeds ``--size`` finished tasks (each with ``--shards`` shards) last updated
100 hours ago, then runs ``archive_expired(hours=72)`` while a second store on the
same database saves new tasks in a loop (``--save-pause`` seconds between saves),
and reports: the length of every unit of the archiving store (``begin`` to
``commit``/``rollback`` events), write transactions (``BEGIN IMMEDIATE`` on SQLite)
apart from read units and from WAL checkpoints (which hold no lock a writer waits
on), its longest statement, the saves' latency percentiles, and the totals.
``--purge`` then runs ``purge_archived`` the same way.

``--url`` names the database (default: a new SQLite file in a temporary
directory). Its four tables are EMPTIED first: give it a scratch database.

    python -m benchmarks.retention --size 1000000
    python -m benchmarks.retention --size 200000 --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, insert

from uniqc_store import TaskInfo, TaskStore, generate_uniqc_task_id
from uniqc_store.schema.tables import task_shards, tasks

SEED_BATCH = 10_000


def seed(store: TaskStore, size: int, shards: int) -> float:
    """``size`` success tasks last touched 100 h ago, straight in (the setup, not timed
    as part of the target); returns the seconds it took."""
    started = time.perf_counter()
    old = (datetime.now(timezone.utc) - timedelta(hours=100)).isoformat()
    for start in range(0, size, SEED_BATCH):
        ids = [f"uqt_{i:09}" for i in range(start, min(start + SEED_BATCH, size))]
        _insert_batch(store, ids, old, shards)
    _analyze(store)
    return time.perf_counter() - started


def _analyze(store: TaskStore) -> None:
    """Statistics for the freshly seeded tables, as autovacuum (PostgreSQL) or InnoDB's
    persistent statistics would have them after such a load in a deployment. Without
    them (the PostgreSQL here runs with ``autovacuum = off``), PostgreSQL plans the
    chunk's ``uniqc_task_id IN (...)`` over 100 ids as a sequential scan of every
    shard (90 ms a statement at 1M, measured) and the benchmark times that instead."""
    statements = {
        "postgresql": ["ANALYZE tasks", "ANALYZE task_shards"],
        "mysql": ["ANALYZE TABLE tasks", "ANALYZE TABLE task_shards"],
        "mariadb": ["ANALYZE TABLE tasks", "ANALYZE TABLE task_shards"],
        "sqlite": ["ANALYZE"],
    }[store.dialect]
    with store.transaction() as conn:  # committed: a read unit's rollback undoes ANALYZE
        for sql in statements:
            conn.exec_driver_sql(sql)


def _insert_batch(store: TaskStore, ids: list[str], old: str, shards: int) -> None:
    """One seeding transaction: the tasks, then their shards."""
    task_rows = [
        {
            "task_id": t,
            "backend": "bench",
            "status": "success",
            "shots": 1000,
            "submit_time": old,
            "update_time": old,
            "result_json": '{"counts": {"00": 512, "11": 512}}',
            "metadata_json": "{}",
        }
        for t in ids
    ]
    shard_rows = [
        {
            "uniqc_task_id": t,
            "shard_index": i,
            "platform_task_id": f"{t}-{i}",
            "backend": "bench",
            "status": "success",
            "submit_time": old,
            "update_time": old,
        }
        for t in ids
        for i in range(shards)
    ]

    with store.transaction() as conn:
        conn.execute(insert(tasks), task_rows)
        if shard_rows:
            conn.execute(insert(task_shards), shard_rows)


class Watch:
    """Times every transaction and statement of one engine (through its events)."""

    def __init__(self, store: TaskStore) -> None:
        self.engine = store.engine
        self.transactions: list[float] = []
        self.longest_statement = 0.0
        self._began: dict[int, float] = {}
        self._writing: set[int] = set()
        self._current: dict[int, str] = {}
        self._pragma: set[int] = set()
        self.writes: list[float] = []
        self.checkpoints: list[float] = []
        self.reads: list[float] = []
        self.longest_sql = ""
        self._statement: dict[int, float] = {}

    def _begin(self, conn: Connection) -> None:
        self._began[id(conn)] = time.perf_counter()

    def _end(self, conn: Connection) -> None:
        began = self._began.pop(id(conn), None)
        if began is not None:
            self.transactions.append(time.perf_counter() - began)
            if id(conn) in self._writing:
                self.writes.append(self.transactions[-1])
            elif id(conn) not in self._pragma:
                self.reads.append(self.transactions[-1])
        self._writing.discard(id(conn))
        self._pragma.discard(id(conn))

    def _before(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        self._statement[id(conn)] = time.perf_counter()
        self._current[id(conn)] = statement
        if statement.startswith("BEGIN IMMEDIATE"):
            self._writing.add(id(conn))
        elif statement.startswith("PRAGMA"):  # a checkpoint's or statistics' own unit
            self._pragma.add(id(conn))

    def _after(self, conn: Connection, *_args: Any) -> None:
        took = time.perf_counter() - self._statement.pop(id(conn), time.perf_counter())
        statement = self._current.pop(id(conn), "")
        if statement.startswith("PRAGMA wal_checkpoint"):
            self.checkpoints.append(took)
        elif took > self.longest_statement:
            self.longest_statement, self.longest_sql = took, " ".join(statement.split())[:60]

    @contextmanager
    def watching(self) -> Iterator[Watch]:
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("begin", self._begin),
            ("commit", self._end),
            ("rollback", self._end),
            ("before_cursor_execute", self._before),
            ("after_cursor_execute", self._after),
        ]
        for name, hook in hooks:
            event.listen(self.engine, name, hook)
        try:
            yield self
        finally:
            for name, hook in hooks:
                event.remove(self.engine, name, hook)


class Saver(threading.Thread):
    """Saves new tasks on its own store until stopped; keeps each save's latency."""

    def __init__(self, url: Any, pause: float) -> None:
        super().__init__(daemon=True)
        self.store = TaskStore(url=url)
        self.pause = pause
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            info = TaskInfo(task_id=generate_uniqc_task_id(), backend="saver", status="running")
            started = time.perf_counter()
            try:
                self.store.save(info)
            except Exception as exc:  # the benchmark reports it; it never stops the run
                self.errors.append(type(exc).__name__)
            self.latencies.append(time.perf_counter() - started)
            time.sleep(self.pause)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentiles(values: list[float]) -> dict[str, Any]:
    if len(values) < 2:
        return {"count": len(values)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "count": len(values),
        "p50_ms": _ms(cuts[49]),
        "p99_ms": _ms(cuts[98]),
        "max_ms": _ms(max(values)),
    }


def timed_beside_saves(
    store: TaskStore, url: Any, pause: float, call: Callable[[], Any]
) -> tuple[Any, dict[str, Any]]:
    """Run ``call`` while a ``Saver`` writes beside it; the figures of both."""
    saver = Saver(url, pause)
    saver.start()
    time.sleep(0.5)  # the saver is up and saving before the call starts
    with Watch(store).watching() as watch:
        started = time.perf_counter()
        outcome = call()
        took = time.perf_counter() - started
    saver.stop.set()
    saver.join()
    saver.store.close()
    figures = {
        "seconds": round(took, 2),
        "write_transactions": percentiles(watch.writes),
        "read_units": percentiles(watch.reads),
        "longest_transaction_ms": _ms(max(watch.writes + watch.reads, default=0.0)),
        "longest_statement_ms": _ms(watch.longest_statement),
        "longest_statement": watch.longest_sql,
        "checkpoints": percentiles(watch.checkpoints),
        "concurrent_save": percentiles(saver.latencies),
        "concurrent_save_errors": sorted(set(saver.errors)),
    }
    return outcome, figures


def run(url: str | None, size: int, shards: int, pause: float, purge: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        target = url or f"sqlite:///{Path(directory) / 'tasks.sqlite'}"
        store = TaskStore(url=target, auto_migrate=True)
        try:
            store.clear_all()
            report: dict[str, Any] = {
                "engine": store.dialect,
                "size": size,
                "shards_per_task": shards,
                "seed_seconds": round(seed(store, size, shards), 1),
            }
            outcome, report["archive_expired"] = timed_beside_saves(
                store, store.url, pause, lambda: store.archive_expired(hours=72)
            )
            report["archive_expired"]["archived"] = outcome["count"]
            if purge:
                purged, report["purge_archived"] = timed_beside_saves(
                    store, store.url, pause, lambda: store.purge_archived(older_than_hours=0)
                )
                report["purge_archived"]["purged"] = purged.tasks
            report["target_met"] = all(
                part["longest_transaction_ms"] <= 1000
                and part["concurrent_save"].get("p99_ms", 0) < 50
                for key, part in report.items()
                if key in ("archive_expired", "purge_archived")
            )
            store.clear_all()
            return report
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="expired tasks to seed")
    parser.add_argument("--shards", type=int, default=1, help="shards per task")
    parser.add_argument("--url", help="database URL (its tables are emptied!)")
    parser.add_argument("--save-pause", type=float, default=0.002, help="seconds between saves")
    parser.add_argument("--purge", action="store_true", help="then purge the archive too")
    args = parser.parse_args(argv)
    report = run(args.url, args.size, args.shards, args.save_pause, args.purge)
    print(json.dumps(report, indent=2))
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
