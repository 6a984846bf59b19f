"""``python -m benchmarks scale``: how the per-call costs grow with the store (issue 28).

Builds (once, then cached) SQLite stores of 10k, 100k, 1M and 10M tasks and,
per run, 1M-task scratch databases on PostgreSQL and MariaDB (created, then
dropped; named ``uniqc_scale_<random>``, a form the test plugin never drops).
Each task has a ~1 KiB result, ~200 B of metadata and two shards; eight
backends share the tasks by a Zipf law (s = 1.2), the statuses are a fixed mix
(``STATUS_MIX``) and the submit times spread over the year 2025 in insertion
order. Ids are ``uqt_`` and 32 hex digits scrambled from the row number, so
they are as scattered over the key as real ``uuid4`` ids.

Per size it times, one call at a time, the median (and p90) of ``--calls``
calls after ``--warmup`` calls of warm-up: get and get_shards on tasks not read
before (``(cold)``: at 10M the file is larger than the page cache), get, save (a new task; a status
change), list's first page (plain, by status, by status and backend), count
(plain, by status, by backend, by both), get_shards, find by platform id,
archive_task (with restore_task after it), and the dashboard's first page with
its counts (the two API calls the page makes, through the real app in process).
A call slower than the budget (``--budget`` seconds per operation) is timed
fewer times: the table says how many. Then the throughputs: archive_expired
over the oldest ``--moved`` tasks (and restore_task back), export into a sink
(its first ``--export-rows`` rows), and import of ``--moved`` new tasks (deleted after).

The SQLite files are kept in ``$UNIQC_SCALE_CACHE`` (default
``~/.cache/uniqc-store-scale``), outside the repository; a file of an older
schema is upgraded in place when the store opens it (that time is reported).
Figures go to ``--json`` and, with ``--plot`` and matplotlib importable, to a PNG.

    python -m benchmarks scale --sizes 10000,100000,1000000 --servers
    python -m benchmarks scale --build-only --sizes 10000000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import URL, text

from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import parse_url, sqlite_url_for
from uniqc_store.repository import transfer
from uniqc_store.schema.tables import task_shards, tasks

CACHE_ENV = "UNIQC_SCALE_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "uniqc-store-scale"
#: Bumped when the generated data change, so older cached files are not reused.
DATA_VERSION = 2
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
SERVER_SIZE = 1_000_000
BACKENDS = tuple(
    f"{vendor}:{chip}"
    for vendor, chip in (
        ("originq", "WK_C180"),
        ("quafu", "ScQ-P136"),
        ("ibm", "brisbane"),
        ("ibm", "kyiv"),
        ("quark", "Baihua"),
        ("ionq", "aria-1"),
        ("originq", "PQPUMESH8"),
        ("dummy", "local"),
    )
)
ZIPF_S = 1.2
STATUS_MIX = {"success": 0.70, "failed": 0.10, "running": 0.08, "pending": 0.07, "cancelled": 0.05}
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
YEAR_S = 365 * 24 * 3600
SHARDS = 2
BATCH = 50_000
#: A status and a backend to filter by: the backends' third (12% of the tasks here).
FILTER_STATUS, FILTER_BACKEND = "failed", BACKENDS[2]
#: Scrambles row numbers into ids: odd, so ``i * MIX mod 2**128`` is one-to-one.
MIX = 0x9E3779B97F4A7C15F39CC0605CEDC835


def task_id(i: int) -> str:
    return f"uqt_{(i * MIX) % (1 << 128):032x}"


def platform_id(i: int, shard: int) -> str:
    return f"job-{i:09d}-{shard}"


def _weights() -> tuple[list[str], list[float]]:
    zipf = [1 / (k + 1) ** ZIPF_S for k in range(len(BACKENDS))]
    return list(BACKENDS), zipf


def _results() -> list[str]:
    """64 result payloads of ~1 KiB each (counts of 34 twenty-qubit outcomes)."""
    rng = random.Random(7)
    made = []
    for _ in range(64):
        counts = {f"{rng.getrandbits(20):020b}": rng.randint(1, 999) for _ in range(34)}
        made.append(json.dumps({"counts": counts, "shots": 1000}))
    return made


def _metadata(i: int, rng: random.Random) -> str:
    return json.dumps(
        {
            "circuit": f"qaoa-{rng.randint(1, 999)}",
            "user": f"user{i % 37}",
            "project": "scale-benchmark",
            "tags": ["scale", f"batch-{i // 1000}"],
            "optimizer": {"name": "COBYLA", "iteration": rng.randint(0, 500)},
            "note": "x" * 40,
        }
    )


def generate(
    start: int, stop: int, size: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows ``start``..``stop`` of a store of ``size`` tasks (deterministic per row)."""
    rng = random.Random(start)
    names, weights = _weights()
    statuses, shares = list(STATUS_MIX), list(STATUS_MIX.values())
    results = _results()
    task_rows, shard_rows = [], []
    step = YEAR_S / size
    for i in range(start, stop):
        backend = rng.choices(names, weights)[0]
        status = rng.choices(statuses, shares)[0]
        submitted = START + timedelta(seconds=i * step)
        updated = submitted + timedelta(seconds=rng.randint(30, 900))
        sub, upd = submitted.isoformat(), updated.isoformat()
        result = results[i % 64] if status == "success" else None
        tid = task_id(i)
        task_rows.append((tid, backend, status, 1000, sub, upd, result, _metadata(i, rng), None))
        for shard in range(SHARDS):
            shard_rows.append(
                (tid, shard, platform_id(i, shard), backend, 1, shard, status, None, None, sub, upd)
            )
    return task_rows, shard_rows


TASK_COLUMNS = [
    "task_id", "backend", "status", "shots", "submit_time", "update_time",
    "result_json", "metadata_json", "error_message",
]  # fmt: skip
SHARD_COLUMNS = [
    "uniqc_task_id", "shard_index", "platform_task_id", "backend", "circuit_count",
    "sub_index_offset", "status", "result_json", "error_message", "submit_time", "update_time",
]  # fmt: skip
INSERT_TASK = (
    "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time, "
    "result_json, metadata_json, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SHARD = (
    "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend, "
    "circuit_count, sub_index_offset, status, result_json, error_message, submit_time, "
    "update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def sqlite_path(size: int) -> Path:
    return cache_dir() / f"tasks-{size}-v{DATA_VERSION}.sqlite"


def build_sqlite(size: int) -> float:
    """The cached file of ``size`` tasks, built if missing; returns the build seconds
    (0 when it was cached).

    The file is made by the store's own migrations, so its schema is exactly head's.
    Its secondary indexes and the counting triggers are then taken out, the rows go
    in with plain ``sqlite3`` ``executemany`` in large transactions (journal off: a
    crash means a rebuild, the file counts as built only once its ``.done`` marker
    is written), and the indexes, ``task_counts`` and the triggers are put back from
    the very SQL the migrations wrote. Why: maintaining nine indexes row by row
    while 10M rows arrive in random key order does random writes over ~5 GB of
    index pages (the first form of this build needed ~40 min for 10M); building
    each index afterwards is one sort, and the only index kept during the load is
    the primary keys' (in cache)."""
    path = sqlite_path(size)
    done = path.with_suffix(".done")
    if done.exists() and path.exists():
        return 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    TaskStore(url=sqlite_url_for(path), auto_migrate=True).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-4000000")  # 4 GB: both primary keys stay in memory
    deferred = _take_out_secondary(conn)
    for first in range(0, size, BATCH):
        task_rows, shard_rows = generate(first, min(first + BATCH, size), size)
        conn.execute("BEGIN")
        conn.executemany(INSERT_TASK, task_rows)
        conn.executemany(INSERT_SHARD, shard_rows)
        conn.execute("COMMIT")
        if first and first % 1_000_000 == 0:
            print(
                f"  built {first:,} of {size:,} ({time.perf_counter() - started:.0f} s)", flush=True
            )
    _put_back(conn, deferred)
    print(f"  indexes and counters back ({time.perf_counter() - started:.0f} s)", flush=True)
    conn.execute("PRAGMA analysis_limit=1000")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    done.write_text(json.dumps({"size": size, "seconds": time.perf_counter() - started}))
    return time.perf_counter() - started


def _take_out_secondary(conn: sqlite3.Connection) -> list[str]:
    """Drops the loaded tables' secondary indexes and every trigger on them; returns
    the SQL that makes them again, indexes first (the migrations' own text)."""
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('tasks', 'task_shards') "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type = 'trigger', name"
    ).fetchall()
    conn.execute("BEGIN")
    for kind, name, _ in rows:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    conn.execute("COMMIT")
    return [sql for _, _, sql in rows]


def _put_back(conn: sqlite3.Connection, deferred: list[str]) -> None:
    """Builds the indexes, fills ``task_counts`` from the rows (it exists from
    revision 0007 on) and makes the triggers again, in one transaction."""
    conn.execute("BEGIN")
    for sql in deferred:
        if sql.lstrip().upper().startswith("CREATE TRIGGER"):
            break
        conn.execute(sql)
    has_counts = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_counts'"
    ).fetchone()
    if has_counts:
        conn.execute("DELETE FROM task_counts WHERE archived = 0")
        conn.execute(
            "INSERT INTO task_counts (archived, status, backend, n) "
            "SELECT 0, status, backend, count(*) FROM tasks GROUP BY status, backend"
        )
    for sql in deferred:
        if sql.lstrip().upper().startswith("CREATE TRIGGER"):
            conn.execute(sql)
    conn.execute("COMMIT")


def build_server(store: TaskStore, size: int) -> float:
    """``size`` tasks into a (migrated, empty) server store, ``executemany`` per batch."""
    names = {t: [c.name for c in t.columns] for t in (tasks, task_shards)}
    assert names[tasks] == TASK_COLUMNS and names[task_shards] == SHARD_COLUMNS
    sql = {
        t: text(f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES (:{', :'.join(cols)})")
        for t, cols in names.items()
    }
    started = time.perf_counter()
    for first in range(0, size, 10_000):
        task_rows, shard_rows = generate(first, min(first + 10_000, size), size)
        with store.transaction() as conn:
            for table, rows in ((tasks, task_rows), (task_shards, shard_rows)):
                conn.execute(sql[table], [dict(zip(names[table], r, strict=True)) for r in rows])
    with store.transaction() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("ANALYZE"))
        else:
            for table in ("tasks", "task_shards"):
                conn.execute(text(f"ANALYZE TABLE {table}"))
    return time.perf_counter() - started


@contextlib.contextmanager
def server_scratch(url: URL) -> Iterator[URL]:
    """A new, empty schema (PostgreSQL) / database (MariaDB), dropped on exit."""
    name = f"uniqc_scale_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    postgres = url.get_backend_name() == "postgresql"
    try:
        with admin.connect() as conn:
            if postgres:
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
                scratch = url.update_query_dict({"options": f"-csearch_path={name}"})
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                scratch = url.set(database=name)
        try:
            yield scratch
        finally:
            with admin.connect() as conn:
                drop = f'DROP SCHEMA "{name}" CASCADE' if postgres else f"DROP DATABASE `{name}`"
                conn.execute(text(drop))
    finally:
        admin.dispose()


# ---------------------------------------------------------------- timing


class Timer:
    """Times operations one call at a time: ``warmup`` calls, then up to ``calls``
    calls or ``budget`` seconds, whichever ends first (at least ``floor`` calls)."""

    def __init__(self, calls: int, warmup: int, budget: float, floor: int = 20) -> None:
        self.calls, self.warmup, self.budget, self.floor = calls, warmup, budget, floor

    def run(self, name: str, fn: Callable[[int], object]) -> dict[str, Any]:
        for n in range(self.warmup):
            fn(n)
        samples: list[float] = []
        began = time.perf_counter()
        n = self.warmup
        while len(samples) < self.calls:
            start = time.perf_counter()
            fn(n)
            samples.append((time.perf_counter() - start) * 1000)
            n += 1
            if len(samples) >= self.floor and time.perf_counter() - began > self.budget:
                break
        samples.sort()
        return {
            "op": name,
            "median_ms": round(statistics.median(samples), 4),
            "p90_ms": round(samples[int(len(samples) * 0.9)], 4),
            "calls": len(samples),
        }


def per_call(store: TaskStore, size: int, timer: Timer, run_tag: str) -> list[dict[str, Any]]:
    """The per-call figures of one store (see the module docstring)."""
    rng = random.Random(size)
    picks = rng.sample(range(size), min(size, 20_000))  # distinct: archive_task moves each once

    def pick(n: int) -> int:
        return picks[n % len(picks)]

    new_ids = [f"uqt_scale{run_tag}{n:012d}" for n in range(timer.warmup + timer.calls)]
    # Reads run twice over the same tasks: first when their pages may not be in memory
    # (a 10M file is larger than this machine's page cache), then warm, as at every
    # smaller size. The growth target is about the warm figures; the cold ones are apart.
    out = [
        timer.run("get (cold)", lambda n: store.get(task_id(pick(n)))),
        timer.run("get_shards (cold)", lambda n: store.get_shards(task_id(pick(n)))),
        timer.run("get", lambda n: store.get(task_id(pick(n)))),
        timer.run(
            "save (new task)",
            lambda n: store.save(TaskInfo(task_id=new_ids[n], backend=BACKENDS[n % 8])),
        ),
        timer.run(
            "save (status change)",
            lambda n: store.save(
                TaskInfo(
                    task_id=new_ids[n],
                    backend=BACKENDS[n % 8],
                    status=("running", "success")[n % 2],
                )
            ),
        ),
        timer.run("list(limit=50)", lambda n: store.list(limit=50)),
        timer.run("list(status, limit=50)", lambda n: store.list(status=FILTER_STATUS, limit=50)),
        timer.run(
            "list(status, backend, limit=50)",
            lambda n: store.list(status=FILTER_STATUS, backend=FILTER_BACKEND, limit=50),
        ),
        timer.run("count()", lambda n: store.count()),
        timer.run("count(status)", lambda n: store.count(status=FILTER_STATUS)),
        timer.run("count(backend)", lambda n: store.count(backend=FILTER_BACKEND)),
        timer.run(
            "count(status, backend)",
            lambda n: store.count(status=FILTER_STATUS, backend=FILTER_BACKEND),
        ),
        timer.run("get_shards", lambda n: store.get_shards(task_id(pick(n)))),
        timer.run(
            "find_uniqc_id_by_platform_id",
            lambda n: store.find_uniqc_id_by_platform_id(platform_id(pick(n), 1)),
        ),
    ]
    moved: list[str] = []

    def archive(n: int) -> None:
        moved.append(task_id(pick(n)))
        store.archive_task(moved[-1])

    out.append(timer.run("archive_task", archive))
    out.append(timer.run("restore_task", lambda n: store.restore_task(moved.pop()) if moved else 0))
    for leftover in moved:
        store.restore_task(leftover)
    out.append(dashboard_first_page(store, timer))
    out.extend(dashboard_search(store, timer, pick))
    _delete_range(store, f"uqt_scale{run_tag}")
    return out


def dashboard_first_page(store: TaskStore, timer: Timer) -> dict[str, Any]:
    """The two calls the dashboard makes when it opens: its first page and its counts."""
    from fastapi.testclient import TestClient

    from uniqc_store.api.app import create_app

    with TestClient(create_app(store), base_url="http://localhost") as client:

        def first_page(_n: int) -> None:
            rows = client.get("/api/dashboard/tasks", params={"table": "live", "limit": 25})
            counts = client.get("/api/dashboard/counts", params={"table": "live"})
            rows.raise_for_status()
            counts.raise_for_status()

        return timer.run("dashboard first page + counts", first_page)


def dashboard_search(
    store: TaskStore, timer: Timer, pick: Callable[[int], int]
) -> list[dict[str, Any]]:
    """The dashboard's search box (issue 29: under 50 ms at 10M tasks), through the
    real route: an id prefix of 12 characters (``uqt_`` and 8 hex digits: one task at
    every size here, read as a key range) and an exact platform id."""
    from fastapi.testclient import TestClient

    from uniqc_store.api.app import create_app

    with TestClient(create_app(store), base_url="http://localhost") as client:

        def search(text: str) -> None:
            found = client.get("/api/dashboard/search", params={"q": text})
            found.raise_for_status()
            if not found.json()["tasks"]:
                raise AssertionError(f"the search for {text!r} found nothing")

        return [
            timer.run("search (id prefix)", lambda n: search(task_id(pick(n))[:12])),
            timer.run("search (platform id)", lambda n: search(platform_id(pick(n), 0))),
        ]


def _delete_range(store: TaskStore, prefix: str) -> None:
    """Delete the tasks (and, by cascade, shards) whose id starts with ``prefix``."""
    with store.transaction() as conn:
        bounds = {"lo": prefix, "hi": prefix + "\U0010ffff"}
        conn.execute(
            text("DELETE FROM task_shards WHERE uniqc_task_id >= :lo AND uniqc_task_id < :hi"),
            bounds,
        )
        conn.execute(text("DELETE FROM tasks WHERE task_id >= :lo AND task_id < :hi"), bounds)


class _Enough(Exception):
    """Raised by the sink once it has the rows it was to time."""


class _Sink(io.TextIOBase):
    """Counts what an export writes, keeping none of it; stops it after ``limit`` rows."""

    def __init__(self, limit: int) -> None:
        self.rows, self.limit = 0, limit

    def write(self, s: str) -> int:
        if s == "\n":
            self.rows += 1
            if self.rows >= self.limit:
                raise _Enough
        return len(s)


def throughput(
    store: TaskStore, size: int, moved: int, export_rows: int, run_tag: str
) -> list[dict[str, Any]]:
    """archive_expired over the oldest ``moved`` tasks, export (its first ``export_rows``
    rows: tasks and shards), import of ``moved`` tasks."""
    out: list[dict[str, Any]] = []
    oldest = START + timedelta(seconds=YEAR_S * min(moved, size) / size)
    hours = (datetime.now(timezone.utc) - oldest).total_seconds() / 3600
    started = time.perf_counter()
    report = store.archive_expired(hours=hours)
    spent = time.perf_counter() - started
    out.append(_rate("archive_expired", report["count"], spent))
    started = time.perf_counter()
    for archived in report["archived"]:
        store.restore_task(archived)
    out.append(_rate("restore_task (loop)", report["count"], time.perf_counter() - started))
    sink = _Sink(export_rows)
    started = time.perf_counter()
    with contextlib.suppress(_Enough):
        transfer.export_jsonl(store, sink)
    out.append(_rate("export_jsonl (rows)", sink.rows, time.perf_counter() - started))
    prefix = f"uqt_import{run_tag}"
    lines = []
    for k in range(moved):
        tid = f"{prefix}{k:012d}"
        row = {
            "task_id": tid, "backend": BACKENDS[k % 8], "status": "success", "shots": 1000,
            "submit_time": "2026-01-01T00:00:00+00:00", "update_time": "2026-01-01T00:00:00+00:00",
            "result_json": _results()[k % 64], "metadata_json": "{}", "error_message": None,
        }  # fmt: skip
        lines.append(json.dumps({"table": "tasks", "row": row}) + "\n")
    started = time.perf_counter()
    imported = transfer.import_jsonl(store, lines)
    out.append(_rate("import_jsonl (rows)", sum(imported.values()), time.perf_counter() - started))
    _delete_range(store, prefix)
    return out


def _rate(name: str, rows: int, seconds: float) -> dict[str, Any]:
    return {
        "op": name,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds) if seconds else None,
    }


def measure(url: URL, size: int, args: argparse.Namespace, build: float) -> dict[str, Any]:
    """Open the store (upgrading it if its schema is older) and take every figure."""
    run_tag = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    store = TaskStore(url=url, auto_migrate=True)
    opened = time.perf_counter() - started
    try:
        if build == 0 and url.get_backend_name() != "sqlite":
            build = build_server(store, size)
        timer = Timer(args.calls, args.warmup, args.budget)
        figures = per_call(store, size, timer, run_tag)
        rates = throughput(store, size, args.moved, args.export_rows, run_tag) if args.moved else []
        revision = store.schema_version()
    finally:
        store.close()
    return {
        "engine": url.get_backend_name(),
        "size": size,
        "schema_version": revision,
        "build_s": round(build, 1),
        "open_s": round(opened, 2),
        "per_call": figures,
        "throughput": rates,
    }


#: The indexes revision 0007 adds (dropped again for save_cost's 0006 side).
NEW_INDEXES = (
    "tasks_status_time_idx",
    "tasks_status_backend_time_idx",
    "tasks_backend_time_idx",
    "archived_status_time_idx",
    "archived_status_backend_time_idx",
    "archived_backend_time_idx",
)


#: The reference's indexes 0007 drops (each new one starts with their column).
REPLACED_INDEXES = (
    ("tasks_backend_idx", "tasks", "backend"),
    ("tasks_status_idx", "tasks", "status"),
    ("archived_backend_idx", "archived_tasks", "backend"),
    ("archived_status_idx", "archived_tasks", "status"),
)


def save_cost(rows: int, calls: int, repeats: int, synchronous: str) -> dict[str, Any]:
    """What 0007 adds to ``save``: the mean microseconds of a save (of a new task, of a
    status change of it, of a save that changes no count) on files of ``rows`` tasks:
    "0006" (0007 with its indexes and triggers dropped and the reference's indexes it
    replaced made again: the store opens no file behind head), "0007 no triggers" (the
    indexes' cost alone) and "0007" (indexes and counters), the three taking turns
    ``repeats`` times; wall time and this process's CPU time (the machine's load moves
    wall time, fsync most, by 2x; the CPU time is what the code itself costs)."""
    import tempfile

    from uniqc_store.migrations.runner import upgrade

    with tempfile.TemporaryDirectory(prefix="uniqc-save-cost-") as tmp:
        stores: dict[str, TaskStore] = {}
        for name in ("0006", "0007 no triggers", "0007"):
            path = Path(tmp) / f"{name.replace(' ', '-')}.sqlite"
            engine = create_store_engine(sqlite_url_for(path))
            upgrade(engine)
            engine.dispose()
            conn = sqlite3.connect(path)
            with conn:
                task_rows, shard_rows = generate(0, rows, rows)
                conn.executemany(INSERT_TASK, task_rows)
                conn.executemany(INSERT_SHARD, shard_rows)
                if name != "0007":
                    for trigger in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                    ).fetchall():
                        conn.execute(f"DROP TRIGGER {trigger[0]}")
                if name == "0006":
                    for index in NEW_INDEXES:
                        conn.execute(f"DROP INDEX {index}")
                    for index, table, column in REPLACED_INDEXES:
                        conn.execute(f"CREATE INDEX {index} ON {table}({column})")
            conn.close()
            stores[name] = TaskStore(
                url=sqlite_url_for(path), auto_migrate=False, sqlite_synchronous=synchronous
            )
        kinds = ("new task", "status change", "same status")
        wall: dict[tuple[str, str], list[float]] = {(n, k): [] for n in stores for k in kinds}
        cpu: dict[tuple[str, str], list[float]] = {(n, k): [] for n in stores for k in kinds}
        for repeat in range(repeats):
            for name, store in stores.items():
                ids = [f"uqt_cost{repeat:03d}{n:08d}" for n in range(calls)]
                for kind, status in zip(kinds, ("pending", "running", "running"), strict=True):
                    started, used = time.perf_counter(), time.process_time()
                    for n, tid in enumerate(ids):
                        store.save(TaskInfo(task_id=tid, backend=BACKENDS[n % 8], status=status))
                    wall[name, kind].append((time.perf_counter() - started) / calls * 1e6)
                    cpu[name, kind].append((time.process_time() - used) / calls * 1e6)
        for store in stores.values():
            store.close()
    report: dict[str, Any] = {"rows": rows, "synchronous": synchronous}
    for label, samples in (("wall", wall), ("cpu", cpu)):  # cpu: this process's own time
        for kind in kinds:
            medians = {name: statistics.median(samples[name, kind]) for name in stores}
            bare, indexed, whole = medians["0006"], medians["0007 no triggers"], medians["0007"]
            report[f"{label} {kind}"] = {
                "us": {name: round(v, 1) for name, v in medians.items()},
                "indexes_cost": round(indexed / bare - 1, 3),
                "counters_cost": round(whole / indexed - 1, 3),
            }
    return report


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    """One row per operation, one column per (engine, size): the medians in ms."""
    columns = [f"{r['engine']} {r['size']:,}" for r in runs]
    ops = [f["op"] for f in runs[0]["per_call"]] if runs else []
    print("| operation (median ms) | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for op in ops:
        cells = []
        for r in runs:
            found = next((f for f in r["per_call"] if f["op"] == op), None)
            if found is None:
                cells.append("")
            else:
                more = "" if found["calls"] >= 1000 else f" (n={found['calls']})"
                cells.append(f"{found['median_ms']:.3f}{more}")
        print(f"| {op} | " + " | ".join(cells) + " |")
    for name in [t["op"] for t in runs[0]["throughput"]] if runs and runs[0]["throughput"] else []:
        cells = []
        for r in runs:
            found = next((t for t in r["throughput"] if t["op"] == name), None)
            cells.append(f"{found['rows_per_s']:,}/s" if found and found["rows_per_s"] else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


#: The calls issue 28 names, drawn before 0007 too (dashed) when a run at 6 is given.
SHOWN_BEFORE = (
    "list(status, backend, limit=50)",
    "count()",
    "count(status, backend)",
    "dashboard first page + counts",
)


def plot(runs: list[dict[str, Any]], path: Path) -> bool:
    """Median per call against store size (SQLite), log-log: the newest schema's runs
    solid, the issue's four calls before 0007 dashed; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sqlite_runs = [r for r in runs if r["engine"] == "sqlite"]
    if not sqlite_runs:
        return False
    newest = max(r["schema_version"] for r in sqlite_runs)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    colors = plt.get_cmap("tab20").colors
    ops = [f["op"] for f in sqlite_runs[0]["per_call"]]
    for k, op in enumerate(ops):
        for before in (False, True):
            if before and op not in SHOWN_BEFORE:
                continue
            chosen = sorted(
                (r for r in sqlite_runs if (r["schema_version"] < newest) == before),
                key=lambda r: r["size"],
            )
            points = [
                (r["size"], f["median_ms"]) for r in chosen for f in r["per_call"] if f["op"] == op
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                style = {"linestyle": "--", "marker": "x"} if before else {"marker": "o"}
                label = f"{op} (before 0007)" if before else op
                ax.plot(xs, ys, color=colors[k % len(colors)], label=label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tasks in the store")
    ax.set_ylabel("median per call (ms)")
    ax.set_title("uniqc-store on SQLite: cost per call against store size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="SQLite sizes, comma-separated"
    )
    parser.add_argument("--servers", action="store_true", help="also 1M on PostgreSQL and MariaDB")
    parser.add_argument("--server-size", type=int, default=SERVER_SIZE)
    parser.add_argument(
        "--server-engines", default="postgresql,mysql", help="with --servers: which ones"
    )
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per operation at most")
    parser.add_argument(
        "--moved", type=int, default=10_000, help="rows for the throughputs (0: skip)"
    )
    parser.add_argument("--export-rows", type=int, default=300_000, help="rows the export times")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--report", type=Path, nargs="+", help="only: print the table (and --plot) of JSON files"
    )
    parser.add_argument(
        "--save-cost", action="store_true", help="only: what 0007 adds to save (see save_cost)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.report:
        runs = [r for path in args.report for r in json.loads(path.read_text())["runs"]]
        print_table(runs)
        if args.plot and not plot(runs, args.plot):
            print("matplotlib is not importable: no plot", file=sys.stderr)
        return 0
    if args.save_cost:
        for synchronous in ("FULL", "NORMAL"):
            print(json.dumps(save_cost(100_000, calls=40, repeats=31, synchronous=synchronous)))
        return 0
    runs: list[dict[str, Any]] = []
    for size in sizes:
        build = build_sqlite(size)
        print(f"sqlite {size:,}: built in {build:.0f} s" if build else f"sqlite {size:,}: cached")
        if not args.build_only:
            runs.append(measure(sqlite_url_for(sqlite_path(size)), size, args, build))
            print(json.dumps(runs[-1]), flush=True)
    if args.servers and not args.build_only:
        chosen = args.server_engines.split(",")
        for engine, env in (
            ("postgresql", "UNIQC_TEST_POSTGRES_URL"),
            ("mysql", "UNIQC_TEST_MYSQL_URL"),
        ):
            if engine not in chosen:
                continue
            raw = os.environ.get(env)
            if not raw:
                print(f"{env} not set: skipped", file=sys.stderr)
                continue
            with server_scratch(parse_url(raw)) as url:
                runs.append(measure(url, args.server_size, args, 0.0))
                print(json.dumps(runs[-1]), flush=True)
    if not runs:
        return 0
    print_table(runs)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n")
    if args.plot and not plot(runs, args.plot):
        print("matplotlib is not importable: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
