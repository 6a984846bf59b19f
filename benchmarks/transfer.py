"""``python -m benchmarks transfer``: export and import throughput and memory at scale.

The targets (issue 28 point 4): import at least 50k validated rows/s (PostgreSQL
and SQLite), export at least 100k rows/s, and RSS growing by less than 50 MB over
the run, at ``--rows`` rows (default 1M).

The data is the scale benchmark's shape: tasks with a ~1 KiB result and ~200 B of
metadata, two shards each (a short result), so a third of the rows are tasks.
The export file is written once; then, per engine, a child process (its own RSS)
imports it into an empty store (every line checked, as ``uniqc-store import``
does), then exports the store to a file. RSS growth is the peak (``VmHWM``, reset
before each phase where Linux allows it) less the RSS before the phase. Rows per
CPU second count the child's own CPU time only (not a server's): on a loaded
machine they say what the client side would reach with a core to itself.

Servers get a scratch schema (PostgreSQL) or database (MySQL/MariaDB), dropped
after: ``--postgres-url`` / ``--mysql-url``, or ``UNIQC_BENCH_POSTGRES_URL`` /
``UNIQC_TEST_POSTGRES_URL`` and ``UNIQC_BENCH_MYSQL_URL`` / ``UNIQC_TEST_MYSQL_URL``.

    nice -n 10 python -m benchmarks transfer --rows 1000000 --engines sqlite,postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text

IMPORT_TARGET = 50_000
EXPORT_TARGET = 100_000
RSS_TARGET_MB = 50.0
SHARDS = 2


def _task_row(i: int) -> dict[str, Any]:
    counts = {f"{(i * 7 + k) % 1024:010b}": (i + k) % 997 for k in range(48)}
    return {
        "task_id": f"uqt_{i:012x}",
        "backend": f"backend_{i % 8}",
        "status": ("success", "failed", "running", "pending")[i % 4],
        "shots": 1000,
        "submit_time": f"2025-{1 + i % 12:02}-{1 + i % 28:02}T12:00:00+00:00",
        "update_time": "2025-12-31T12:00:00+00:00",
        "result_json": json.dumps({"counts": counts, "shots": 1000}),
        "metadata_json": json.dumps({"circuit": "h q[0]; cx q[0], q[1]; " * 5, "n": i}),
        "error_message": None,
    }


def _shard_row(i: int, k: int) -> dict[str, Any]:
    return {
        "uniqc_task_id": f"uqt_{i:012x}",
        "shard_index": k,
        "platform_task_id": f"plat-{i}-{k}",
        "backend": f"backend_{i % 8}",
        "circuit_count": 1,
        "sub_index_offset": k,
        "status": "success",
        "result_json": json.dumps({"job": k, "ok": True}),
        "error_message": None,
        "submit_time": "2025-06-01T12:00:00+00:00",
        "update_time": "2025-12-31T12:00:00+00:00",
    }


def write_input(path: Path, rows: int) -> int:
    """An export file of about ``rows`` rows (tasks, each followed by its shards)."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        i = 0
        while written < rows:
            out.write(json.dumps({"table": "tasks", "row": _task_row(i)}) + "\n")
            for k in range(SHARDS):
                out.write(json.dumps({"table": "task_shards", "row": _shard_row(i, k)}) + "\n")
            written += 1 + SHARDS
            i += 1
    return written


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux 4.0+: ``clear_refs`` 5); best effort."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@contextmanager
def _measured(into: dict[str, Any], name: str, rows: int) -> Iterator[None]:
    _reset_peak()
    before = _status_kb("VmRSS")
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    into[name] = {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        # this process's CPU only (not the server's): what a loaded machine hides
        "rows_per_cpu_s": round(rows / cpu) if cpu else None,
        "rss_growth_mb": round((_status_kb("VmHWM") - before) / 1024, 1),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def scratch(engine: str, server: str | None, work: Path) -> Iterator[str]:
    """An empty database of ``engine``; a server's scratch is dropped afterwards."""
    if engine == "sqlite":
        yield f"sqlite:///{work / 'bench.sqlite'}"
        return
    from uniqc_store.db.engine import create_store_engine

    assert server is not None
    url = make_url(server)
    name = f"uqt_bench_{uuid.uuid4().hex[:12]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    if engine == "postgresql":
        create, drop = f'CREATE SCHEMA "{name}"', f'DROP SCHEMA "{name}" CASCADE'
        url = url.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        create, drop = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", f"DROP DATABASE `{name}`"
        url = url.set(database=name)
    with admin.connect() as conn:
        conn.execute(text(create))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


def child(engine: str, server: str | None, source: Path, rows: int) -> dict[str, Any]:
    """Import ``source`` into an empty store, then export it: figures per phase."""
    from uniqc_store import TaskStore
    from uniqc_store.repository import transfer

    result: dict[str, Any] = {"engine": engine}
    with (
        tempfile.TemporaryDirectory(prefix="uniqc-transfer-") as tmp,
        scratch(engine, server, Path(tmp)) as url,
    ):
        store = TaskStore(url=url, auto_migrate=True)
        try:
            with source.open(encoding="utf-8") as lines, _measured(result, "import", rows):
                counts = transfer.import_jsonl(store, lines)
            assert sum(counts.values()) == rows, counts
            out_path = Path(tmp) / "export.jsonl"
            with out_path.open("w", encoding="utf-8") as out, _measured(result, "export", rows):
                counts = transfer.export_jsonl(store, out)
            assert sum(counts.values()) == rows, counts
        finally:
            store.close()
    return result


def _server_urls(args: argparse.Namespace) -> dict[str, str | None]:
    env = os.environ.get
    return {
        "sqlite": None,
        "postgresql": args.postgres_url
        or env("UNIQC_BENCH_POSTGRES_URL")
        or env("UNIQC_TEST_POSTGRES_URL"),
        "mysql": args.mysql_url or env("UNIQC_BENCH_MYSQL_URL") or env("UNIQC_TEST_MYSQL_URL"),
    }


def _verdicts(result: dict[str, Any]) -> dict[str, Any]:
    imp, exp = result["import"], result["export"]
    result["ok"] = {
        "import": imp["rows_per_s"] >= IMPORT_TARGET,
        "export": exp["rows_per_s"] >= EXPORT_TARGET,
        "rss": max(imp["rss_growth_mb"], exp["rss_growth_mb"]) < RSS_TARGET_MB,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks transfer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to import and export")
    parser.add_argument("--engines", default="sqlite,postgresql,mysql")
    parser.add_argument("--postgres-url")
    parser.add_argument("--mysql-url")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    servers = _server_urls(args)
    if args.child:
        report = child(args.child, servers[args.child], args.source, args.rows)
        print(json.dumps(report))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="uniqc-transfer-") as tmp:
        source = Path(tmp) / "input.jsonl"
        rows = write_input(source, args.rows)
        for engine in args.engines.split(","):
            if engine != "sqlite" and not servers.get(engine):
                print(f"{engine}: no server URL, skipped", file=sys.stderr)
                continue
            command = [sys.executable, "-m", "benchmarks.transfer", "--child", engine]
            command += ["--rows", str(rows), "--source", str(source)]
            for flag in ("postgres_url", "mysql_url"):
                if getattr(args, flag):
                    command += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results.append(_verdicts(json.loads(done.stdout.splitlines()[-1])))
            print(json.dumps(results[-1]), flush=True)
    report = {"rows": rows, "load_average": os.getloadavg(), "results": results}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        imp, exp = r["import"], r["export"]
        print(
            f"{r['engine']:<11} import {imp['rows_per_s']:>7} rows/s ({imp['rows_per_cpu_s']} "
            f"per CPU s, +{imp['rss_growth_mb']} MB)   export {exp['rows_per_s']:>7} rows/s "
            f"({exp['rows_per_cpu_s']} per CPU s, +{exp['rss_growth_mb']} MB)   ok: {r['ok']}"
        )
    return 0 if all(all(r["ok"].values()) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
