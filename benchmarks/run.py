"""``python -m benchmarks``: uniqc-store against the reference's way of working.

Prints a table (and writes JSON) with both sides, the ratio and the target for:
per-call operations on a SQLite file (unwatched, and watched by a listener or
OpenTelemetry), ``save_many``, the v5 data migration
(time against row by row and against SQLite's floor, and peak RSS),
``archive_expired``, streaming reads, and PostgreSQL upsert throughput against
raw psycopg (when ``UNIQC_BENCH_POSTGRES_URL`` or ``UNIQC_TEST_POSTGRES_URL`` is
set). ``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy

from benchmarks.baseline import RawFloor, ReferenceLikeStore, rekey_floor, rekey_row_by_row
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import sqlite_url_for
from uniqc_store.migrations.runner import upgrade

Result = dict[str, Any]
T = TypeVar("T")


def take_turns(sides: Mapping[str, Callable[[int], T]], repeats: int) -> dict[str, list[T]]:
    """Each side's measurement (given the run's number), ``repeats`` times; the sides
    take turns run by run, so a slow spell of the machine falls on every side."""
    samples: dict[str, list[T]] = {name: [] for name in sides}
    for repeat in range(repeats):
        for name, measure in sides.items():
            samples[name].append(measure(repeat))
    return samples


def compare_us(fns: list[Callable[[int], object]], calls: int, repeats: int = 5) -> list[float]:
    """Each function's median over ``repeats`` runs of the mean time of one call, in
    microseconds, the functions taking turns. Each one's argument counts up across
    its runs (0, 1, ...), so no call repeats an earlier one's work."""

    def mean_us(fn: Callable[[int], object]) -> Callable[[int], float]:
        def run(repeat: int) -> float:
            start = time.perf_counter()
            for n in range(repeat * calls, (repeat + 1) * calls):
                fn(n)
            return (time.perf_counter() - start) / calls * 1e6

        return run

    samples = take_turns({str(i): mean_us(fn) for i, fn in enumerate(fns)}, repeats)
    return [statistics.median(runs) for runs in samples.values()]


def row(i: int, **extra: Any) -> Result:
    return {
        "task_id": f"uqt_{i:08d}",
        "backend": f"originq:WK_{i % 4}",
        "status": ("success", "failed", "running", "pending", "cancelled")[i % 5],
        "shots": 1000,
        "submit_time": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}+00:00",
        "result": {"counts": {"00": i, "11": 1000 - i}},
        "metadata": {"circuit": "bell", "i": i},
        "error_message": None,
    } | extra


def raw_params(r: Result) -> Result:
    """A ``row`` as raw SQL parameters: what the floor and raw psycopg write."""
    return {
        **r,
        "update_time": "t",
        "result_json": json.dumps(r["result"]),
        "metadata_json": json.dumps(r["metadata"]),
    }


def info(r: Result) -> TaskInfo:
    return TaskInfo(
        task_id=r["task_id"],
        backend=r["backend"],
        status=r["status"],
        shots=r["shots"],
        submit_time=r["submit_time"],
        result=r["result"],
        metadata=r["metadata"],
    )


def add_shard(ours: TaskStore, ref: ReferenceLikeStore, task_id: str, platform_id: str) -> None:
    """The same shard (index 0) on both sides."""
    shard: dict[str, Any] = {
        "uniqc_task_id": task_id,
        "shard_index": 0,
        "platform_task_id": platform_id,
        "backend": "b",
        "circuit_count": 1,
        "sub_index_offset": 0,
        "status": "running",
        "result": None,
        "error_message": None,
        "submit_time": "t",
    }
    ours.save_shard(TaskShard(**shard))
    ref.save_shard(shard)


def per_call_section(workdir: Path, rows: int, calls: int) -> list[Result]:
    ours = TaskStore(cache_dir=workdir / "ours")
    TaskStore(cache_dir=workdir / "ref").close()  # same schema for the baseline
    ref = ReferenceLikeStore(workdir / "ref" / "tasks.sqlite")
    data = [row(i) for i in range(rows)]
    ours.save_many(info(r) for r in data)
    for r in data:
        ref.save(r)
    for i in range(0, rows, 2):
        add_shard(ours, ref, data[i]["task_id"], f"p{i}")
    # no close and reopen: the store made its planner statistics while it grew
    normal = TaskStore(cache_dir=workdir / "ours", sqlite_synchronous="NORMAL")

    def pick(n: int) -> Result:
        return data[(n * 7919) % rows]

    cases: list[tuple[str, Callable[[int], object], Callable[[int], object], float]] = [
        ("save", lambda n: ours.save(info(pick(n))), lambda n: ref.save(pick(n)), 5),
        ("get", lambda n: ours.get(pick(n)["task_id"]), lambda n: ref.get(pick(n)["task_id"]), 10),
        (
            "list(status, limit=50)",
            lambda n: ours.list(status="running", limit=50),
            lambda n: ref.list("running", 50),
            5,
        ),
        (
            "count(backend)",
            lambda n: ours.count(backend="originq:WK_1"),
            lambda n: ref.count("originq:WK_1"),
            10,
        ),
        (
            "save_shard",
            lambda n: ours.save_shard(TaskShard(pick(n)["task_id"], 1, f"q{n}", "b")),
            lambda n: ref.save_shard(
                {
                    "uniqc_task_id": pick(n)["task_id"],
                    "shard_index": 1,
                    "platform_task_id": f"q{n}",
                    "backend": "b",
                    "circuit_count": 1,
                    "sub_index_offset": 0,
                    "status": "pending",
                    "result": None,
                    "error_message": None,
                    "submit_time": "t",
                }
            ),
            5,
        ),
        (
            "get_shards",
            lambda n: ours.get_shards(data[(n * 2) % rows]["task_id"]),
            lambda n: ref.get_shards(data[(n * 2) % rows]["task_id"]),
            10,
        ),
        (
            "find_uniqc_id_by_platform_id",
            lambda n: ours.find_uniqc_id_by_platform_id(f"p{(n * 2) % rows}"),
            lambda n: ref.find_uniqc_id_by_platform_id(f"p{(n * 2) % rows}"),
            10,
        ),
    ]
    cases.insert(
        1,
        (
            "save, sqlite_synchronous=NORMAL (survives a process crash, not power loss)",
            lambda n: normal.save(info(pick(n))),
            lambda n: ref.save(pick(n)),
            5,
        ),
    )
    results = []
    for name, our_fn, ref_fn, target in cases:
        mine, theirs = compare_us([our_fn, ref_fn], calls)
        results.append(_ratio(f"{name} (us/call)", mine, theirs, target))
    # archive_task: each call archives a different task with one shard
    victims = [row(rows + i) for i in range(calls * 5)]
    ours.save_many(info(r) for r in victims)
    for r in victims:
        ref.save(r)
        add_shard(ours, ref, r["task_id"], f"v{r['task_id']}")
    mine, theirs = compare_us(
        [
            lambda n: ours.archive_task(victims[n]["task_id"]),
            lambda n: ref.archive_task(victims[n]["task_id"]),
        ],
        calls,
    )
    results.append(_ratio("archive_task (us/call)", mine, theirs, 5))
    # the floor: plain sqlite3 on one connection
    TaskStore(url=sqlite_url_for(workdir / "floor.sqlite")).close()
    floor = RawFloor(workdir / "floor.sqlite")
    params = [raw_params(r) for r in data]
    floor.insert_many(params)
    save_floor, get_floor = compare_us(
        [
            lambda n: floor.save(params[n % rows]),
            lambda n: floor.get(params[(n * 7919) % rows]["task_id"]),
        ],
        calls,
    )
    results.append(
        _for_scale(
            "floor: raw sqlite3 save / get (us/call)",
            f"{results[0]['ours']} / {results[2]['ours']}",
            f"{save_floor:.1f} / {get_floor:.1f}",
        )
    )
    floor.close()
    ours.close()
    normal.close()
    return results


def watched_section(workdir: Path, rows: int, calls: int) -> list[Result]:
    """A SQLite store someone watches: it leaves the direct path and pays SQLAlchemy's
    execution and the listeners, on its held connection.

    With a no-op ``before_cursor_execute`` listener, ``get`` against a bare
    ``conn.execute(select(...))`` on a held connection of a plain engine with the
    same listener; with OpenTelemetry's SQLAlchemy instrumentation on (spans made
    and dropped), ``save`` and ``list`` against the same store unwatched.
    """
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    from uniqc_store.schema.tables import tasks

    url = sqlite_url_for(workdir / "watched" / "tasks.sqlite")
    store = TaskStore(url=url)
    data = [row(i) for i in range(rows)]
    store.save_many(info(r) for r in data)

    def pick(n: int) -> Result:
        return data[(n * 7919) % rows]

    def no_op(*_args: object) -> None:
        return None

    plain = sqlalchemy.create_engine(url)
    sqlalchemy.event.listen(plain, "before_cursor_execute", no_op)
    sqlalchemy.event.listen(store.engine, "before_cursor_execute", no_op)
    by_id = sqlalchemy.select(tasks).where(tasks.c.task_id == sqlalchemy.bindparam("task_id"))
    results: list[Result] = []
    with plain.connect() as held:

        def bare_get(n: int) -> object:
            return held.execute(by_id, {"task_id": pick(n)["task_id"]}).all()

        mine, theirs = compare_us([lambda n: store.get(pick(n)["task_id"]), bare_get], calls)
    label = "watched get, no-op listener, vs bare conn.execute (us/call)"
    results.append(_within(label, mine, theirs, 1.3))
    sqlalchemy.event.remove(store.engine, "before_cursor_execute", no_op)
    plain.dispose()

    cases: dict[str, Callable[[int], object]] = {
        "save": lambda n: store.save(info(pick(n))),
        "list(status, limit=50)": lambda n: store.list(status="running", limit=50),
        "get": lambda n: store.get(pick(n)["task_id"]),
    }
    unwatched = {name: compare_us([fn], calls)[0] for name, fn in cases.items()}
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(
        engine=store.engine, tracer_provider=TracerProvider(), skip_dep_check=True
    )
    try:
        traced = {name: compare_us([fn], calls)[0] for name, fn in cases.items()}
    finally:
        instrumentor.uninstrument()
    for name, limit in (("save", 1.5), ("list(status, limit=50)", 1.5)):
        label = f"{name} traced by OpenTelemetry vs unwatched (us/call)"
        results.append(_within(label, traced[name], unwatched[name], limit))
    results.append(
        _for_scale(
            "get traced by OpenTelemetry / unwatched (us/call)",
            round(traced["get"], 1),
            round(unwatched["get"], 1),
            round(traced["get"] / unwatched["get"], 2),
        )
    )
    store.close()
    return results


def _within(name: str, ours: float, other: float, limit: float) -> Result:
    """``ours / other`` (how many times slower we are) against an upper ``limit``."""
    ratio = ours / other
    return {
        "name": name,
        "ours": round(ours, 1),
        "other": round(other, 1),
        "ratio": round(ratio, 2),
        "target": f"<= {limit}x",
        "ok": ratio <= limit,
    }


def _ratio(name: str, ours: float, other: float, target: float, *, higher: bool = False) -> Result:
    """``other / ours`` (how many times faster we are) against ``target``."""
    ratio = ours / other if higher else other / ours
    return {
        "name": name,
        "ours": round(ours, 1),
        "other": round(other, 1),
        "ratio": round(ratio, 2),
        "target": f">= {target}x",
        "ok": ratio >= target,
    }


def _for_scale(name: str, ours: object, other: object, ratio: object = "") -> Result:
    """A row with no target: our figure beside a floor's."""
    return {"name": name, "ours": ours, "other": other, "ratio": ratio, "target": "", "ok": True}


def save_many_section(workdir: Path, rows: int, repeats: int) -> list[Result]:
    """``save_many`` into a new file against raw ``executemany`` in one transaction;
    the median of ``repeats`` runs per side, the sides taking turns."""
    data = [row(i) for i in range(rows)]

    def ours(path: Path) -> float:
        store = TaskStore(url=sqlite_url_for(path))
        start = time.perf_counter()
        store.save_many(info(r) for r in data)
        seconds = time.perf_counter() - start
        store.close()
        return seconds

    def raw(path: Path) -> float:
        TaskStore(url=sqlite_url_for(path)).close()  # the same schema
        floor = RawFloor(path)
        start = time.perf_counter()
        floor.insert_many([raw_params(r) for r in data])
        seconds = time.perf_counter() - start
        floor.close()
        return seconds

    samples = take_turns(
        {
            "ours": lambda n: ours(workdir / f"many-ours-{n}.sqlite"),
            "raw": lambda n: raw(workdir / f"many-raw-{n}.sqlite"),
        },
        repeats,
    )
    mine, raw_s = (statistics.median(samples[kind]) for kind in ("ours", "raw"))
    ratio = mine / raw_s
    return [
        {
            "name": f"save_many {rows:,} (s, median of {repeats}) vs raw executemany",
            "ours": round(mine, 3),
            "other": round(raw_s, 3),
            "ratio": round(ratio, 2),
            "target": "<= 2x slower",
            "ok": ratio <= 2,
        }
    ]


def build_legacy_file(path: Path, live: int, archived: int) -> None:
    """A reference file at v4 holding legacy (platform-id) rows."""
    engine = create_store_engine(sqlite_url_for(path), foreign_keys=False)
    upgrade(engine, "0004")
    engine.dispose()
    conn = sqlite3.connect(path)
    meta = json.dumps({"circuit": "bell", "note": "x" * 40})
    conn.executemany(
        "INSERT INTO tasks VALUES (?, 'originq', 'success', 1000, ?, ?, ?, ?, NULL)",
        (
            (
                f"plat-{i:09d}",
                "2024-01-01T00:00:00+00:00",
                "2024-01-02T00:00:00+00:00",
                '{"counts": {"00": 1}}',
                meta,
            )
            for i in range(live)
        ),
    )
    conn.executemany(
        "INSERT INTO archived_tasks VALUES (?, 'ibm', 'failed', 10, 't', 't', NULL, '[1]', ?, 'e')",
        ((f"old-{i:09d}", "2024-02-01T00:00:00+00:00") for i in range(archived)),
    )
    conn.commit()
    conn.close()


def migrate_in_child(kind: str, path: Path) -> tuple[float, float]:
    """Run one migration in a fresh process; return (seconds, peak RSS in MB)."""
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from benchmarks.run import _child_migrate\n"
        f"print(_child_migrate({kind!r}, Path({str(path)!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss = out.stdout.split()
    return float(seconds), float(rss)


def _child_migrate(kind: str, path: Path) -> str:
    from uniqc_store.migrations import runner as migrations

    migrations.script_directory()  # imports done before the clock starts
    start = time.perf_counter()
    if kind == "ours":
        engine = create_store_engine(sqlite_url_for(path), foreign_keys=False)
        upgrade(engine)
        engine.dispose()
    elif kind == "floor":
        rekey_floor(path)
    else:
        rekey_row_by_row(path)
    seconds = time.perf_counter() - start
    return f"{seconds:.3f} {peak_rss_mb():.1f}"


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` rather than ``ru_maxrss``, which on Linux
    keeps the parent's high-water mark across fork and exec."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def migrate_fresh_file(kind: str, workdir: Path, rows: int) -> tuple[float, float]:
    """Build a legacy file and migrate it in a child; (seconds, peak RSS in MB)."""
    path = workdir / f"v5-{kind}.sqlite"
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    build_legacy_file(path, rows, rows // 10)
    return migrate_in_child(kind, path)


def migration_section(workdir: Path, rows: int, large: int, repeats: int) -> list[Result]:
    archived = rows // 10
    runs = take_turns(
        {
            "ours": lambda _: migrate_fresh_file("ours", workdir, rows),
            "ref": lambda _: migrate_fresh_file("ref", workdir, rows),
            "floor": lambda _: migrate_fresh_file("floor", workdir, rows),
        },
        repeats,
    )
    (ours_s, ours_rss), (ref_s, ref_rss), (floor_s, _) = (
        (statistics.median(s for s, _ in runs[kind]), max(rss for _, rss in runs[kind]))
        for kind in ("ours", "ref", "floor")
    )
    results = [
        _ratio(
            f"v5 migration {rows:,} + {archived:,} archived (s, median of {repeats})",
            ours_s,
            ref_s,
            5,
        ),
        _for_scale(
            "v5 floor: one UPDATE + one INSERT per table, no batches (s);"
            " ratio: row by row / floor",
            round(ours_s, 2),
            round(floor_s, 2),
            round(ref_s / floor_s, 2),
        ),
        {
            "name": f"v5 peak RSS at {rows:,} rows (MB)",
            "ours": ours_rss,
            "other": ref_rss,
            "ratio": "",
            "target": "< 80 MB",
            "ok": ours_rss < 80,
        },
    ]
    if large:
        build_legacy_file(workdir / "v5-large.sqlite", large, large // 10)
        large_s, large_rss = migrate_in_child("ours", workdir / "v5-large.sqlite")
        results.append(
            {
                "name": f"v5 at {large:,} rows: s / peak RSS MB (ours only)",
                "ours": f"{large_s:.1f} / {large_rss}",
                "other": f"{ours_rss} MB at {rows:,}",
                "ratio": round(large_rss / ours_rss, 2),
                "target": "no RSS growth (<= 1.1x)",
                "ok": large_rss <= ours_rss * 1.1,
            }
        )
    return results


def archive_expired_section(workdir: Path, rows: int) -> list[Result]:
    store = TaskStore(cache_dir=workdir / "expire")
    old = (datetime.now(timezone.utc) - timedelta(days=10)).isoformat()
    store.save_many(info(row(i, status="success")) for i in range(rows))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE tasks SET update_time = ?", (old,))
    start = time.perf_counter()
    outcome = store.archive_expired(hours=72)
    seconds = time.perf_counter() - start
    store.close()
    per_10k = seconds / rows * 10_000
    return [
        {
            "name": f"archive_expired over {rows:,} tasks (s; s per 10k)",
            "ours": f"{seconds:.2f}; {per_10k:.3f}",
            "other": "",
            "ratio": "",
            "target": "one pass, well under 1 s per 10k",
            "ok": outcome["count"] == rows and per_10k < 0.5,
        }
    ]


def streaming_section(workdir: Path, small: int, large: int) -> list[Result]:
    store = TaskStore(cache_dir=workdir / "stream")
    store.save_many(info(row(i)) for i in range(large))
    peaks = []
    for limit in (small, large):
        tracemalloc.start()
        seen = sum(1 for i, _ in zip(range(limit), store.iter_tasks(), strict=False))
        peaks.append(tracemalloc.get_traced_memory()[1] / 1024)
        tracemalloc.stop()
        assert seen == limit
    store.close()
    return [
        {
            "name": f"iter_tasks peak traced KB at {small:,} / {large:,} rows",
            "ours": f"{peaks[0]:.0f} / {peaks[1]:.0f}",
            "other": "",
            "ratio": round(peaks[1] / peaks[0], 2),
            "target": "flat (<= 1.5x)",
            "ok": peaks[1] <= peaks[0] * 1.5,
        }
    ]


def _pg_writer(args: tuple[str, str, int, int]) -> float:
    kind, url, worker, count = args
    start = time.perf_counter()
    if kind == "ours":
        store = TaskStore(url=url)
        for i in range(count):
            store.save(info(row(worker * 1_000_000 + i)))
        store.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            for i in range(count):
                r = row(worker * 1_000_000 + i)
                conn.execute(_PG_UPSERT, raw_params(r))
                conn.commit()
    return time.perf_counter() - start


_PG_UPSERT = (
    "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time, result_json,"
    " metadata_json, error_message) VALUES (%(task_id)s, %(backend)s, %(status)s, %(shots)s,"
    " %(submit_time)s, %(update_time)s, %(result_json)s, %(metadata_json)s, %(error_message)s)"
    " ON CONFLICT (task_id) DO UPDATE SET backend = excluded.backend, status = excluded.status,"
    " shots = excluded.shots, update_time = excluded.update_time, result_json ="
    " excluded.result_json, metadata_json = excluded.metadata_json, error_message ="
    " excluded.error_message"
)


def postgres_section(url: str, count: int, repeats: int) -> list[Result]:
    """Upserts per second with 1 and 8 writer processes: the median of ``repeats``
    runs per side, the sides taking turns."""
    from concurrent.futures import ProcessPoolExecutor

    results = []
    store = TaskStore(url=url, auto_migrate=True)
    for writers in (1, 8):

        def rate(kind: str, writers: int = writers) -> float:
            store.clear_all()
            start = time.perf_counter()
            with ProcessPoolExecutor(writers) as pool:
                list(pool.map(_pg_writer, [(kind, url, w, count) for w in range(writers)]))
            return writers * count / (time.perf_counter() - start)

        samples = take_turns(
            {"ours": lambda _: rate("ours"), "raw": lambda _: rate("raw")}, repeats
        )
        rates = {kind: statistics.median(runs) for kind, runs in samples.items()}
        ratio = rates["raw"] / rates["ours"]
        results.append(
            {
                "name": f"PostgreSQL upserts/s, {writers} writer(s)",
                "ours": round(rates["ours"]),
                "other": round(rates["raw"]),
                "ratio": round(ratio, 2),
                "target": "raw within 1.5x",
                "ok": ratio <= 1.5,
            }
        )
    store.clear_all()
    store.close()
    return results


def import_section(repeats: int) -> list[Result]:
    """``import uniqc_store`` against ``import sqlalchemy`` (which it needs anyway), each
    in a fresh interpreter, the bare interpreter's start-up taken off both.

    Both sides import from bytecode, as after ``pip install`` (which compiles
    it): the children write and read their bytecode under a temporary
    ``PYTHONPYCACHEPREFIX`` (nothing is written into the checkout or
    site-packages), and each side is imported once untimed to fill it.
    """
    with tempfile.TemporaryDirectory(prefix="uniqc-bench-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        medians = _import_medians(env, repeats)
    ours = (medians["uniqc_store"] - medians["bare"]) * 1000
    other = (medians["sqlalchemy"] - medians["bare"]) * 1000
    return [
        {
            "name": "import uniqc_store vs import sqlalchemy (ms, interpreter start-up excluded)",
            "ours": round(ours, 1),
            "other": round(other, 1),
            "ratio": round(ours / other, 2),
            "target": "<= 1.3x",
            "ok": ours / other <= 1.3,
        }
    ]


def _import_medians(env: dict[str, str], repeats: int) -> dict[str, float]:
    """Median seconds of a bare interpreter, ``import sqlalchemy`` and ``import uniqc_store``."""

    def importing(module: str) -> Callable[[int], float]:
        code = f"import {module}" if module else "pass"
        subprocess.run([sys.executable, "-c", code], check=True, env=env)  # fills the cache

        def run(_repeat: int) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            return time.perf_counter() - start

        return run

    sides = {"bare": importing(""), "sqlalchemy": importing("sqlalchemy")}
    sides["uniqc_store"] = importing("uniqc_store")
    return {k: statistics.median(v) for k, v in take_turns(sides, repeats).items()}


def machine() -> Result:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "when": datetime.now(timezone.utc).isoformat(),
    }


def print_table(results: list[Result]) -> None:
    header = ("benchmark", "uniqc-store", "reference-like", "ratio", "target", "")
    rows = [header] + [
        (
            r["name"],
            str(r["ours"]),
            str(r["other"]),
            str(r["ratio"]),
            r["target"],
            "ok" if r["ok"] else "MISSED",
        )
        for r in results
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for line in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/latest.json"))
    args = parser.parse_args(argv)
    q = args.quick
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="uniqc-bench-") as tmp:
        work = Path(tmp)
        results += import_section(repeats=3 if q else 25)
        results += per_call_section(work, rows=500 if q else 2000, calls=100 if q else 300)
        results += watched_section(work, rows=500 if q else 2000, calls=100 if q else 300)
        results += save_many_section(work, rows=5_000 if q else 100_000, repeats=1 if q else 3)
        results += migration_section(
            work, rows=5_000 if q else 100_000, large=0 if q else 1_000_000, repeats=1 if q else 3
        )
        results += archive_expired_section(work, rows=5_000 if q else 100_000)
        results += streaming_section(
            work, small=2_000 if q else 10_000, large=10_000 if q else 100_000
        )
    pg = os.environ.get("UNIQC_BENCH_POSTGRES_URL") or os.environ.get("UNIQC_TEST_POSTGRES_URL")
    if pg:
        results += postgres_section(pg, count=200 if q else 1000, repeats=1 if q else 3)
    report = {"machine": machine(), "results": results}
    print(json.dumps(report["machine"]))
    print_table(results)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON written to {args.json}")
    return 0 if all(r["ok"] for r in results) else 1
