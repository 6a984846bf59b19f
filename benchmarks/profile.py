"""Where our time goes, one operation at a time: ``python -m benchmarks.profile list``.

Runs the store's side of one benchmark under pyinstrument (the ``dev`` extra)
and prints the call tree, so a change can be aimed at what costs. The data
are the per-call benchmark's: 2,000 tasks, every other one with a shard;
``v5`` migrates a file of legacy rows instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.run import build_legacy_file, info, row
from uniqc_store import TaskShard, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import sqlite_url_for
from uniqc_store.migrations.runner import upgrade

ROWS = 2000
OPERATIONS = ("save", "get", "list", "count", "save_shard", "get_shards", "archive_task")


def operations(store: TaskStore, calls: int) -> dict[str, Callable[[int], object]]:
    """Fill ``store`` like the per-call benchmark; one callable per operation."""
    data = [row(i) for i in range(ROWS)]
    victims = [row(ROWS + i) for i in range(calls)]
    store.save_many(info(r) for r in data + victims)
    store.save_shards(
        TaskShard(r["task_id"], 0, f"p-{r['task_id']}", "b") for r in (data[::2] + victims)
    )

    def pick(n: int) -> str:
        return str(data[(n * 7919) % ROWS]["task_id"])

    return {
        "save": lambda n: store.save(info(data[(n * 7919) % ROWS])),
        "get": lambda n: store.get(pick(n)),
        "list": lambda n: store.list(status="running", limit=50),
        "count": lambda n: store.count(backend="originq:WK_1"),
        "save_shard": lambda n: store.save_shard(TaskShard(pick(n), 1, f"q{n}", "b")),
        "get_shards": lambda n: store.get_shards(pick(n)),
        "archive_task": lambda n: store.archive_task(victims[n]["task_id"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("operation", choices=(*OPERATIONS, "v5"))
    parser.add_argument("--calls", type=int, default=2000, help="calls to profile")
    parser.add_argument("--rows", type=int, default=100_000, help="legacy rows for v5")
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is missing: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    profiler = Profiler(interval=0.0002)
    with tempfile.TemporaryDirectory(prefix="uniqc-profile-") as tmp:
        work = Path(tmp)
        if args.operation == "v5":
            build_legacy_file(work / "legacy.sqlite", args.rows, args.rows // 10)
            engine = create_store_engine(sqlite_url_for(work / "legacy.sqlite"), foreign_keys=False)
            with profiler:
                upgrade(engine)
            engine.dispose()
        else:
            with TaskStore(cache_dir=work) as store:
                call = operations(store, args.calls)[args.operation]
                call(0)  # statements compiled before the clock starts
                with profiler:
                    for n in range(1, args.calls):
                        call(n)
    print(profiler.output_text(unicode=True, color=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
