"""``python -m benchmarks server-counts``: what revision 0009's counters cost and give
on the servers (issue 28 point 2).

``--save-cost``: two scratch databases per engine, both at head, one with 0009's six
triggers dropped (its store then counts from the rows); single ``save`` calls (a new
task, a status change of it, a save that changes no count) take turns between the
two call by call, ``--calls`` per kind per round, ``--rounds`` rounds, in this one
process; the
figure is the median per-call wall time of each side and their ratio (the triggers
run in the server, so this process's CPU time would not show them).

``--counts``: a scratch PostgreSQL / MariaDB database of ``--size`` tasks seeded
with one ``INSERT ... SELECT`` (no payloads: what counts read is ``status``,
``backend`` and the indexes), at 0008, then upgraded to 0009 (the fill is
timed); ``count()`` plain and filtered and the dashboard's first page with its
counts are timed with the counters, then with the triggers dropped (the store
then counts by ``GROUP BY``, as before 0009).

The scratch databases are dropped at the end (``uniqc_scale_<random>``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import URL, text

from benchmarks.scale import STATUS_MIX, Timer, dashboard_first_page, server_scratch
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import parse_url
from uniqc_store.migrations.runner import upgrade

ENGINES = {"postgresql": "UNIQC_TEST_POSTGRES_URL", "mysql": "UNIQC_TEST_MYSQL_URL"}
TRIGGERS = [
    f"{t}_count_{e}" for t in ("tasks", "archived_tasks") for e in ("insert", "delete", "update")
]
BACKENDS = tuple(f"backend_{i}" for i in range(8))
KINDS = (("new task", "pending"), ("status change", "running"), ("same status", "running"))


def _drop_triggers(url: URL) -> None:
    engine = create_store_engine(url)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for name in TRIGGERS:
            on = f" ON {name.rsplit('_count_', 1)[0]}" if postgres else ""
            conn.execute(text(f"DROP TRIGGER {name}{on}"))
    engine.dispose()


@contextlib.contextmanager
def _with_and_without_counters(url: URL) -> Iterator[dict[str, URL]]:
    """Two scratch databases at head, ``"counters"`` and ``"no counters"`` (0009's
    triggers dropped), dropped after."""
    with server_scratch(url) as with_url, server_scratch(url) as without_url:
        for scratch in (with_url, without_url):
            TaskStore(url=scratch, auto_migrate=True).close()
        _drop_triggers(without_url)
        yield {"counters": with_url, "no counters": without_url}


def save_cost(url: URL, calls: int, rounds: int) -> dict[str, Any]:
    """Median per-call wall time of ``save`` with and without 0009's triggers."""
    samples: dict[tuple[str, str], list[float]] = {}
    with _with_and_without_counters(url) as scratches:
        stores = {name: TaskStore(url=scratch) for name, scratch in scratches.items()}
        assert stores["counters"]._counters and not stores["no counters"]._counters
        try:
            sides = list(stores.items())
            for r in range(rounds):
                ids = [f"uqt_cost{r:04d}_{n:05d}" for n in range(calls)]
                for kind, status in KINDS:
                    for n, tid in enumerate(ids):  # the two sides take turns call by call
                        info = TaskInfo(task_id=tid, backend=BACKENDS[n % 8], status=status)
                        for name, store in sides if n % 2 == 0 else reversed(sides):
                            started = time.perf_counter()
                            store.save(info)
                            elapsed = (time.perf_counter() - started) * 1e6
                            samples.setdefault((name, kind), []).append(elapsed)
        finally:
            for store in stores.values():
                store.close()
    report: dict[str, Any] = {"engine": url.get_backend_name(), "calls": calls, "rounds": rounds}
    for kind, _status in KINDS:
        with_, without = (statistics.median(samples[n, kind]) for n in ("counters", "no counters"))
        report[kind] = {
            "us_with": round(with_, 1),
            "us_without": round(without, 1),
            "cost": round(with_ / without - 1, 3),
            "saves_per_side": len(samples["counters", kind]),
        }
    return report


def _upsert(postgres: bool) -> str:
    conflict = (
        "ON CONFLICT (task_id) DO UPDATE SET status = excluded.status"
        if postgres
        else "ON DUPLICATE KEY UPDATE status = VALUES(status)"
    )
    return (
        "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
        f" metadata_json) VALUES (:i, :b, :s, 1, '2025', '2025', '{{}}') {conflict}"
    )


def statement_cost(url: URL, calls: int, rounds: int) -> dict[str, Any]:
    """Median wall time of one upsert statement (a new task; a status change) inside a
    held transaction, rolled back: the triggers' own server work, without the COMMIT."""
    samples: dict[tuple[str, str], list[float]] = {}
    with _with_and_without_counters(url) as scratches:
        engines = {name: create_store_engine(scratch) for name, scratch in scratches.items()}
        sql = text(_upsert(url.get_backend_name() == "postgresql"))
        for r in range(rounds):
            for name, engine in engines.items() if r % 2 == 0 else reversed(engines.items()):
                with engine.connect() as conn:
                    for kind, status in (("new task", "pending"), ("status change", "running")):
                        got = samples.setdefault((name, kind), [])
                        for n in range(calls):
                            params = {"i": f"uqt_{r}_{n}", "b": BACKENDS[n % 8], "s": status}
                            started = time.perf_counter()
                            conn.execute(sql, params)
                            got.append((time.perf_counter() - started) * 1e6)
                    conn.rollback()
        for engine in engines.values():
            engine.dispose()
    report: dict[str, Any] = {"engine": url.get_backend_name(), "statement": True}
    for kind in ("new task", "status change"):
        with_, without = (statistics.median(samples[n, kind]) for n in ("counters", "no counters"))
        report[kind] = {
            "us_with": round(with_, 1),
            "us_without": round(without, 1),
            "added_us": round(with_ - without, 1),
        }
    return report


def _seed(url: URL, size: int) -> float:
    """``size`` tasks (statuses by ``STATUS_MIX``, eight backends, half of the tasks on
    one) in one ``INSERT ... SELECT`` over a number series, then ANALYZE (and VACUUM)."""
    engine = create_store_engine(url)
    postgres = engine.dialect.name == "postgresql"
    edges, total = [], 0.0
    for status, share in STATUS_MIX.items():
        total += share
        edges.append((round(total * 1000), status))
    status = " ".join(f"WHEN r < {e} THEN '{s}'" for e, s in edges[:-1])
    if postgres:
        series = f"generate_series(1::bigint, {size})"
        numbers = f"SELECT g AS i, (g * 7919) % 1000 AS r FROM {series} AS g"
        padded = "lpad(i::text, 10, '0')"
    else:  # MariaDB's sequence engine
        numbers = f"SELECT seq AS i, (seq * 7919) % 1000 AS r FROM seq_1_to_{size}"
        padded = "LPAD(i, 10, '0')"
    pick = "(CASE WHEN r < 500 THEN 0 WHEN r < 750 THEN 1 ELSE r % 8 END)"
    cast = "::text" if postgres else ""
    sql = (
        "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
        f" metadata_json) SELECT CONCAT('uqt_', {padded}), CONCAT('backend_', {pick}{cast}),"
        f" CASE {status} ELSE '{edges[-1][1]}' END, 1000, CONCAT('2025-', {padded}), '2025',"
        f" '{{}}' FROM ({numbers}) AS n"
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(sql))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE" if postgres else "ANALYZE TABLE tasks"))
    if postgres:  # a fresh visibility map, as a table that has been vacuumed has
        vacuum = create_store_engine(url, isolation_level="AUTOCOMMIT")
        with vacuum.connect() as conn:
            conn.execute(text("VACUUM tasks"))
        vacuum.dispose()
    engine.dispose()
    return time.perf_counter() - started


def _calls(store: TaskStore, timer: Timer) -> list[dict[str, Any]]:
    ops: list[tuple[str, Callable[[int], object]]] = [
        ("count()", lambda _n: store.count()),
        ("count(status)", lambda _n: store.count(status="success")),
        ("count(backend)", lambda _n: store.count(backend="backend_0")),
        ("count(status, backend)", lambda _n: store.count(status="failed", backend="backend_3")),
    ]
    out = [timer.run(name, fn) for name, fn in ops]
    out.append(dashboard_first_page(store, timer))
    return out


def counts(url: URL, size: int, timer: Timer) -> dict[str, Any]:
    with server_scratch(url) as scratch:
        engine = create_store_engine(scratch, foreign_keys=False)
        upgrade(engine, "0008")
        seeded = _seed(scratch, size)
        started = time.perf_counter()
        upgrade(engine)
        filled = time.perf_counter() - started
        with TaskStore(url=scratch) as store:
            assert store._counters and store.count() == size
            after = _calls(store, timer)
        _drop_triggers(scratch)  # the same rows, counted by GROUP BY
        with TaskStore(url=scratch) as store:
            assert not store._counters and store.count() == size
            before = _calls(store, timer)
        engine.dispose()
    return {
        "engine": url.get_backend_name(),
        "size": size,
        "seed_s": round(seeded, 1),
        "upgrade_0009_s": round(filled, 2),
        "group_by": before,
        "counters": after,
    }


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m benchmarks server-counts", description=__doc__)
    parser.add_argument("--engines", default="postgresql,mysql")
    parser.add_argument("--save-cost", action="store_true")
    parser.add_argument("--calls", type=int, default=50, help="saves per kind per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--statement-cost", action="store_true")
    parser.add_argument("--counts", action="store_true")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--timed", type=int, default=200, help="calls per count figure")
    parser.add_argument("--budget", type=float, default=20.0)
    args = parser.parse_args(argv)
    for engine in args.engines.split(","):
        raw = os.environ.get(ENGINES[engine])
        if not raw:
            print(f"{engine}: ${ENGINES[engine]} is not set; skipped", file=sys.stderr)
            continue
        url = parse_url(raw)
        if args.save_cost:
            print(json.dumps(save_cost(url, args.calls, args.rounds)), flush=True)
        if args.statement_cost:
            print(json.dumps(statement_cost(url, args.calls, args.rounds)), flush=True)
        if args.counts:
            timer = Timer(args.timed, warmup=5, budget=args.budget, floor=10)
            print(json.dumps(counts(url, args.size, timer)), flush=True)
    return 0
