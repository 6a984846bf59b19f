"""``python -m benchmarks.metrics_cost``: what the per-call metrics cost a SQLite ``get``.

Every public call goes through ``metrics.count_calls``'s wrapper, which records
the call (two ``perf_counter()`` reads and ``Metrics.record``); the executor
translates database errors below it. This script times ``get`` on a warm SQLite
file with that wrapper (``metrics``) and with a wrapper that only translates, as
the one before metrics did (``bare``),
round by round in one process. On a shared machine wall-clock figures move more
than the difference, so it can also run one side alone under valgrind, whose
instruction counts do not depend on the load:

    python -m benchmarks.metrics_cost --rounds 15
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.metrics_cost --side metrics --calls 20000
    (the same with --side bare; compare the two "Collected" totals)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.translation import store_error
from uniqc_store.db.urls import sqlite_url_for


def bare_get(store: TaskStore) -> Any:
    """``store.get`` with translation only: the wrapper as it was before metrics."""
    method = TaskStore.get.__wrapped__  # type: ignore[attr-defined]

    @functools.wraps(method)
    def get(task_id: str) -> Any:
        try:
            return method(store, task_id)
        except SQLAlchemyError as exc:
            raise store_error(exc, store.url) from exc

    return get


def timed(get: Any, ids: list[str]) -> float:
    """Microseconds per call over ``ids``."""
    started = time.perf_counter()
    for task_id in ids:
        get(task_id)
    return (time.perf_counter() - started) / len(ids) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--side", choices=("both", "metrics", "bare"), default="both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = TaskStore(url=sqlite_url_for(Path(folder) / "tasks.sqlite"), auto_migrate=True)
        ids = [f"uqt_metrics_{i:05d}" for i in range(1000)]
        store.save_many(TaskInfo(task_id=t, backend="bench", status="success") for t in ids)
        calls = [ids[i % len(ids)] for i in range(args.calls)]
        sides = {"metrics": store.get, "bare": bare_get(store)}
        if args.side != "both":
            timed(sides[args.side], calls)
            store.close()
            return 0
        figures: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, get in sides.items():
                figures[name].append(timed(get, calls))
        store.close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:8} get median of {args.rounds} rounds: {value:.2f} us")
    print(
        f"metrics cost: {medians['metrics'] - medians['bare']:+.2f} us per call "
        f"({medians['metrics'] / medians['bare'] - 1:+.1%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
