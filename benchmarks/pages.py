"""``python -m benchmarks.pages``: deep pages and the calls on many ids (issue 28).

Seeds ``--size`` tasks (submit times one second apart, 8 backends, 3 statuses), then
measures, per depth, the median of ``--repeat`` calls of ``list(limit=50,
offset=depth)`` beside ``list_page(limit=50, cursor=<the cursor at that depth>)``,
unfiltered and by status; then ``--ids`` ids (one in ten a live task) deleted and
archived one call per id (what the bulk routes did) and by ``delete_many`` /
``archive_many``.

``--url`` names the database (default: a new SQLite file in a temporary directory).
Its four tables are EMPTIED first: give it a scratch database.

    python -m benchmarks.pages --size 200000
    python -m benchmarks.pages --size 200000 --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from uniqc_store import TaskConflictError, TaskInfo, TaskStore
from uniqc_store.repository.pages import encode_cursor
from uniqc_store.schema.tables import tasks

SEED_BATCH = 10_000
STATUSES = ("success", "failed", "running")
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def seed(store: TaskStore, size: int) -> None:
    for start in range(0, size, SEED_BATCH):
        store.save_many(
            TaskInfo(
                f"uqt_{i:09}",
                f"backend{i % 8}",
                STATUSES[i % 3],
                submit_time=(START + timedelta(seconds=i)).isoformat(),
            )
            for i in range(start, min(start + SEED_BATCH, size))
        )


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def cursor_at(store: TaskStore, depth: int, **filters: Any) -> str | None:
    """The cursor whose page starts ``depth`` rows down (ties here: none)."""
    if depth == 0:
        return None
    row = store.list(**filters, limit=1, offset=depth - 1)[0]
    return encode_cursor(tasks, row.submit_time, row.task_id)


def deep_pages(store: TaskStore, size: int, repeat: int) -> list[dict[str, Any]]:
    figures = []
    for filters in ({}, {"status": "failed"}):
        matching = size if not filters else size // 3
        for depth in (d for d in (0, 1_000, 10_000, 100_000, 1_000_000) if d < matching):
            cursor = cursor_at(store, depth, **filters)
            by_offset = functools.partial(store.list, **filters, limit=50, offset=depth)
            by_cursor = functools.partial(store.list_page, **filters, limit=50, cursor=cursor)
            offset_ms, page_ms = median_ms(by_offset, repeat), median_ms(by_cursor, repeat)
            assert [t.task_id for t in store.list(**filters, limit=50, offset=depth)] == [
                t.task_id for t in store.list_page(**filters, limit=50, cursor=cursor).tasks
            ]
            figures.append(
                {"filters": filters, "depth": depth, "offset_ms": offset_ms, "cursor_ms": page_ms}
            )
    return figures


def one_by_one_archive(store: TaskStore, ids: list[str]) -> None:
    for task_id in ids:
        with contextlib.suppress(TaskConflictError):
            store.archive_task(task_id)


def bulk_calls(store: TaskStore, size: int, count: int) -> dict[str, float]:
    """Seconds for ``count`` ids, one in ten live, each way (the live ones re-seeded)."""
    ids = [f"uqt_{i:09}" for i in range(size, size + count)]
    figures: dict[str, float] = {}
    ways: list[tuple[str, Callable[[list[str]], object]]] = [
        ("delete one by one", lambda i: [store.delete(t) for t in i]),
        ("delete_many", store.delete_many),
        ("archive_task one by one", lambda i: one_by_one_archive(store, i)),
        ("archive_many", store.archive_many),
    ]
    for name, way in ways:
        store.save_many(TaskInfo(t, "b", "success") for t in ids[::10])
        started = time.perf_counter()
        way(ids)
        figures[name] = round(time.perf_counter() - started, 3)
        store.delete_many(ids)  # the next way starts from the same state
        for task_id in ids[::10]:
            store.delete_archived(task_id)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'tasks.sqlite'}"
    with TaskStore(url=url, auto_migrate=True) as store:
        store.clear_all()
        seed(store, args.size)
        with store.transaction() as conn:  # the statistics a server's autovacuum would gather
            conn.exec_driver_sql("ANALYZE" if store.dialect == "postgresql" else "SELECT 1")
        if store.dialect in ("mysql", "mariadb"):
            with store.reading() as conn:
                conn.exec_driver_sql("ANALYZE TABLE tasks")
        report = {
            "dialect": store.dialect,
            "size": args.size,
            "pages": deep_pages(store, args.size, args.repeat),
            "bulk_seconds": bulk_calls(store, args.size, args.ids),
        }
        store.clear_all()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
