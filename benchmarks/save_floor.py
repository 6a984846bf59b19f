"""``python -m benchmarks save-floor``: a store's ``save`` against a raw ``sqlite3``
upsert + commit of the same row with the same JSON encoding (issue 28 point 5).

Both sides write to a file of the same schema (the store makes both, so 0007's
``task_counts`` triggers fire on both), holding the same 2,000 tasks, with the
same per-connection pragmas (WAL, ``synchronous``, foreign keys, busy timeout);
each side gets the same ``TaskInfo`` and re-saves it (an update that changes
no count). The raw side reads the record's attributes, stamps ``update_time``
as the store does and encodes both payloads with ``json.dumps(...,
ensure_ascii=False, allow_nan=False)`` (``--raw-json c``: the same text from the
C encoder built directly, as the store now does); it checks nothing. Its
statement is the SQL the store compiles for its upsert (the same SET list), run
as ``BEGIN IMMEDIATE``, the upsert, ``COMMIT`` on one open connection.

Two measurements, each for ``synchronous=FULL`` and ``NORMAL``:

- wall time (default): rounds of ``--calls`` calls, the sides taking turns in
  one process; the median per side and the ratio;
- ``--callgrind``: the same rounds under ``valgrind --tool=callgrind``, one
  child per ``synchronous``, each round's instructions counted apart (a dump
  at each ``os.getppid()``, which nothing else calls): instructions per call,
  repeatable whatever else the machine does. fsync costs time, not
  instructions, so the two levels differ there only by SQLite's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run import info, row, take_turns
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.sqlite import JOURNAL_SIZE_LIMIT
from uniqc_store.records import utc_now_iso

ROWS = 2000
LEVELS = ("FULL", "NORMAL")


_STRICT = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def c_dumps(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False)``'s text, from the C
    encoder built directly (what the store does since issue 28 point 5): ``--raw-json c``."""
    if _make_c_encoder is None or isinstance(value, str):
        return _STRICT.encode(value)
    encode = _make_c_encoder(
        {}, _STRICT.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False
    )
    return "".join(encode(value, 0))


def plain_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


DUMPS = {"dumps": plain_dumps, "c": c_dumps}


class RawUpsert:
    """The least ``sqlite3`` does for a ``save``: one open connection, no checks."""

    def __init__(
        self, path: Path, synchronous: str, sql: str, busy_ms: int, dumps: str = "dumps"
    ) -> None:
        self.dumps: Callable[[Any], str] = DUMPS[dumps]
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        self.conn, self.sql = conn, sql

    def save(self, task: TaskInfo) -> None:
        params = (
            task.task_id,
            task.backend,
            task.status,
            task.shots,
            task.submit_time,
            utc_now_iso(),
            None if task.result is None else self.dumps(task.result),
            self.dumps(task.metadata),
            task.error_message,
        )
        execute = self.conn.execute
        execute("BEGIN IMMEDIATE")
        execute(self.sql, params)
        execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def sides(
    workdir: Path, synchronous: str, raw_json: str = "dumps"
) -> tuple[TaskStore, RawUpsert, list[TaskInfo]]:
    """The store and the raw side on two files made and filled alike, and the records."""
    records = [info(row(i)) for i in range(ROWS)]
    for name in ("ours", "raw"):
        with TaskStore(cache_dir=workdir / name) as maker:
            maker.save_many(records)
    store = TaskStore(cache_dir=workdir / "ours", sqlite_synchronous=synchronous)
    executor = store._executor
    sql = executor.driver(store._sql.upsert_task).sql  # what the store runs
    path = workdir / "raw" / "tasks.sqlite"
    raw = RawUpsert(path, synchronous, sql, executor.busy_timeout_ms, raw_json)
    return store, raw, records


def calls_of(
    store: TaskStore, raw: RawUpsert, records: list[TaskInfo]
) -> dict[str, Callable[[int], object]]:
    def pick(n: int) -> TaskInfo:
        return records[(n * 7919) % ROWS]

    return {"ours": lambda n: store.save(pick(n)), "raw": lambda n: raw.save(pick(n))}


def wall(synchronous: str, calls: int, rounds: int, raw_json: str) -> dict[str, Any]:
    """Median us per call of each side over ``rounds`` interleaved rounds."""
    with tempfile.TemporaryDirectory(prefix="uniqc-save-floor-") as tmp:
        store, raw, records = sides(Path(tmp), synchronous, raw_json)
        fns = calls_of(store, raw, records)
        for fn in fns.values():  # warm-up: statements compiled, caches filled
            for n in range(calls):
                fn(n)

        def timed(fn: Callable[[int], object]) -> Callable[[int], float]:
            def run(repeat: int) -> float:
                start = time.perf_counter()
                for n in range((repeat + 1) * calls, (repeat + 2) * calls):
                    fn(n)
                return (time.perf_counter() - start) / calls * 1e6

            return run

        samples = take_turns({name: timed(fn) for name, fn in fns.items()}, rounds)
        store.close()
        raw.close()
    medians = {name: statistics.median(runs) for name, runs in samples.items()}
    return {
        "synchronous": synchronous,
        "ours_us": round(medians["ours"], 1),
        "raw_us": round(medians["raw"], 1),
        "ratio": round(medians["ours"] / medians["raw"], 3),
        "rounds": rounds,
        "calls": calls,
        "raw_json": raw_json,
    }


def phases(synchronous: str, calls: int, rounds: int, raw_json: str) -> None:
    """The callgrind child: warm-up, then rounds of ours / raw, ``os.getppid()``
    before each phase and at the end (callgrind dumps there)."""
    with tempfile.TemporaryDirectory(prefix="uniqc-save-floor-") as tmp:
        store, raw, records = sides(Path(tmp), synchronous, raw_json)
        fns = calls_of(store, raw, records)
        for fn in fns.values():
            for n in range(calls):
                fn(n)
        for repeat in range(rounds):
            for fn in fns.values():
                os.getppid()
                for n in range((repeat + 1) * calls, (repeat + 2) * calls):
                    fn(n)
        os.getppid()
        store.close()
        raw.close()


def callgrind(synchronous: str, calls: int, rounds: int, raw_json: str) -> dict[str, Any]:
    """Instructions per call of each side, per round, from a callgrind child."""
    with tempfile.TemporaryDirectory(prefix="uniqc-save-floor-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.save_floor",
            "--phases",
            "--synchronous",
            synchronous,
            "--calls",
            str(calls),
            "--rounds",
            str(rounds),
            "--raw-json",
            raw_json,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        totals = {}
        for dump in Path(tmp).glob("cg.out.*"):
            text = dump.read_text(errors="replace")
            found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
            assert found is not None, dump
            totals[int(dump.suffix[1:])] = int(found.group(1))
    # dump 1 ends at the first getppid (set-up and warm-up); then ours, raw, ours, ...
    measured = [totals[k] / calls for k in range(2, 2 + 2 * rounds)]
    ours, raw = measured[0::2], measured[1::2]
    return {
        "synchronous": synchronous,
        "ours_ir": [round(x) for x in ours],
        "raw_ir": [round(x) for x in raw],
        "ratio": round(statistics.median(ours) / statistics.median(raw), 3),
        "calls": calls,
        "raw_json": raw_json,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks save-floor", description=__doc__)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--synchronous", choices=LEVELS, action="append")
    parser.add_argument("--calls", type=int, default=None, help="calls per round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side")
    parser.add_argument(
        "--raw-json",
        choices=sorted(DUMPS),
        default="dumps",
        help="the raw side's encoder: json.dumps (default) or the C encoder built directly",
    )
    args = parser.parse_args(argv)
    levels = args.synchronous or list(LEVELS)
    if args.phases:
        phases(levels[0], args.calls, args.rounds, args.raw_json)
        return 0
    for level in levels:
        if args.callgrind:
            result = callgrind(level, args.calls or 200, args.rounds or 3, args.raw_json)
        else:
            result = wall(level, args.calls or 200, args.rounds or 41, args.raw_json)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
