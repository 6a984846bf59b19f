"""``python -m benchmarks.dashboard``: the dashboard's first page over a large SQLite store.

Builds (or reuses, with ``--file``) a SQLite store of ``--tasks`` tasks (1,000,000
by default), then times each API call the page makes when it opens (the footer's
info, the first page of tasks, the counts for the charts) and a few it makes
next (a filter, the oldest first, the next page, a search by task id, by its
start and by platform id), through the real app in
process: the cold first call after opening the store and the median of
``--repeats`` warm calls. With Playwright and Chromium installed it also times
the page itself in a browser, from navigation to the rows being on screen,
against a real ``uniqc-store serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy
from fastapi.testclient import TestClient

from uniqc_store import TaskStore
from uniqc_store.api.app import create_app
from uniqc_store.db.urls import sqlite_url_for

BACKENDS = ("originq:WK_C180", "quafu:ScQ-P136", "ibm:brisbane", "dummy")
STATUSES = ("success",) * 6 + ("failed", "running", "pending", "cancelled")
INSERT = (
    "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time, "
    "result_json, metadata_json, error_message) VALUES (?, ?, ?, 1000, ?, ?, ?, ?, NULL)"
)

SHARD_INSERT = (
    "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend, "
    "circuit_count, sub_index_offset, status, submit_time, update_time) "
    "VALUES (?, 0, ?, 'dummy', 1, 0, 'success', ?, ?)"
)
#: One task in this many has a shard (``plat-<i>``), for the search by platform id.
SHARD_EVERY = 10


def _shards(tasks: int, start: datetime) -> Any:
    for i in range(0, tasks, SHARD_EVERY):
        at = (start + timedelta(seconds=i)).isoformat()
        yield (f"uqt_{i:032x}", f"plat-{i}", at, at)


def build_store(path: Path, tasks: int) -> None:
    """A migrated store file with ``tasks`` rows, one a second, written in one transaction.

    The rows go in through plain ``sqlite3`` (building a million records through
    the store takes minutes and is not what is measured here).
    """
    TaskStore(url=sqlite_url_for(path)).close()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    result = json.dumps({"counts": {"00": 512, "11": 488}})
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            INSERT,
            (
                (
                    f"uqt_{i:032x}",
                    BACKENDS[i % len(BACKENDS)],
                    STATUSES[i % len(STATUSES)],
                    (start + timedelta(seconds=i)).isoformat(),
                    (start + timedelta(seconds=i)).isoformat(),
                    result,
                    json.dumps({"circuit": "bell", "i": i}),
                )
                for i in range(tasks)
            ),
        )
        conn.executemany(SHARD_INSERT, _shards(tasks, start))
    conn.execute("ANALYZE")
    conn.close()


def time_call(
    client: TestClient, path: str, params: dict[str, Any], repeats: int
) -> dict[str, Any]:
    """The cold first call and the median of ``repeats`` warm ones, in milliseconds."""
    samples: list[float] = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        response = client.get(path, params=params)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    shown = "&".join(f"{k}={v}" for k, v in params.items() if k != "cursor")
    call = f"GET {path}" + (f"?{shown}" if shown else "")
    return {
        "call": call + (" (next page)" if "cursor" in params else ""),
        "cold_ms": round(samples[0], 2),
        "warm_ms": round(statistics.median(samples[1:]), 2),
    }


def api_calls(path: Path, repeats: int) -> list[dict[str, Any]]:
    """Each call the page makes, through the real app (TestClient, no network)."""
    # base_url: TestClient's default host ("testserver") is not one the app answers for
    with (
        TaskStore(url=sqlite_url_for(path)) as store,
        TestClient(create_app(store), base_url="http://localhost") as client,
    ):
        count = client.get("/api/dashboard/counts", params={"table": "live"}).json()["total"]
        middle = (count // 2) // SHARD_EVERY * SHARD_EVERY
        first = {"table": "live", "order": "newest", "limit": 25}
        cursor = client.get("/api/dashboard/tasks", params=first).json()["next_cursor"]
        calls: list[tuple[str, dict[str, Any]]] = [
            ("/api/dashboard/info", {}),
            ("/api/dashboard/tasks", first),
            ("/api/dashboard/counts", {"table": "live"}),
            ("/api/dashboard/tasks", {**first, "status": "failed"}),
            ("/api/dashboard/tasks", {**first, "backend": "dummy"}),
            ("/api/dashboard/tasks", {**first, "order": "oldest"}),
            ("/api/dashboard/tasks", {**first, "cursor": cursor}),
            ("/api/dashboard/search", {"q": f"uqt_{middle:032x}"}),  # one id, exactly
            ("/api/dashboard/search", {"q": f"uqt_{middle:032x}"[:-3]}),  # 4,096 ids start so
            ("/api/dashboard/search", {"q": f"plat-{middle}"}),  # a platform id
        ]
        return [time_call(client, route, params, repeats) for route, params in calls]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def browser_first_page(path: Path, reloads: int) -> dict[str, dict[str, float]] | None:
    """When the rows and the charts were on screen, in ms from the start of navigation
    (the page's own ``performance.mark``s): a fresh browser's first visit to a fresh
    server (cold caches), then the median of ``reloads`` reloads. None without
    Playwright or Chromium."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import Page, sync_playwright
    except ImportError:
        return None
    if not Path(chromium).exists():
        return None

    def visit(page: Page, url: str) -> dict[str, float]:
        page.goto(url)
        page.wait_for_selector(".charts li", timeout=30_000)
        page.wait_for_selector("table.tasks tbody tr a")
        marks = page.evaluate(
            "['uniqc:rows', 'uniqc:charts'].map(n => performance.getEntriesByName(n)[0].startTime)"
        )
        return {"rows": round(marks[0], 1), "charts": round(marks[1], 1)}

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "UNIQC_STORE_API_TOKEN"}
    command = [sys.executable, "-m", "uniqc_store.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--url", str(sqlite_url_for(path))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            url = f"http://127.0.0.1:{port}/"
            first = visit(page, url)
            again = [visit(page, url) for _ in range(reloads)]
            browser.close()
        median = {k: round(statistics.median(v[k] for v in again), 1) for k in first}
        return {
            "first visit (fresh server and browser)": first,
            f"reload (median of {reloads})": median,
        }
    finally:
        server.terminate()
        server.wait(timeout=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--file", type=Path, help="reuse (or build once) this store file")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser timing")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="uniqc-dash-"))
    path = args.file or workdir / "tasks.sqlite"
    if not path.exists():
        start = time.perf_counter()
        build_store(path, args.tasks)
        print(f"built {args.tasks:,} tasks in {time.perf_counter() - start:.1f} s: {path}")
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    print(
        f"{count:,} live tasks; Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}, {os.cpu_count()} cores"
    )
    results = api_calls(path, args.repeats)
    width = max(len(r["call"]) for r in results)
    print(f"{'call':<{width}}  {'cold ms':>8}  {'warm ms':>8}")
    for r in results:
        print(f"{r['call']:<{width}}  {r['cold_ms']:>8.2f}  {r['warm_ms']:>8.2f}")
    opening = results[:3]
    print(
        "first page (info + tasks + counts): "
        f"cold {sum(r['cold_ms'] for r in opening):.1f} ms, "
        f"warm {sum(r['warm_ms'] for r in opening):.1f} ms"
    )
    if not args.no_browser:
        shown = browser_first_page(path, args.repeats)
        if shown is None:
            print("in Chromium: skipped (no playwright/chromium)")
        for visit, at in (shown or {}).items():
            print(f"in Chromium, {visit}: rows at {at['rows']} ms, charts at {at['charts']} ms")
    if args.file is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
