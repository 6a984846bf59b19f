"""``python -m benchmarks.plugin_rollback``: what the pytest plugin's fixtures cost per test.

Runs ``--tests`` trivial tests (save one task, count) in a pytest sub-process with
the ``task_store`` fixture (a store made per test; on a server its rows deleted
after it) and with ``task_store_in_transaction`` (one store per session, a
transaction rolled back per test). A ``conftest.py`` of the run times each test's
setup and teardown (where the fixtures work) and its call, so pytest's own start-up
is not in the figures. Reported per fixture: the first test's setup (the session's
one-off work: a scratch database, its migration), the median setup + teardown of
the others, the median call, and the run's wall time.

``--url``: a server to make the scratch databases on (as ``UNIQC_STORE_TEST_URL``;
default: SQLite in memory). Nothing outside the plugin's scratch databases is touched.

    python -m benchmarks.plugin_rollback --tests 200
    python -m benchmarks.plugin_rollback --url postgresql+psycopg://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = """
import pytest
from uniqc_store import TaskInfo


@pytest.mark.parametrize("n", range({count}))
def test_trivial({fixture}, n):
    {fixture}.save(TaskInfo(task_id="uqt_1", backend="b"))
    assert {fixture}.count() == 1
"""
#: Times each phase of each test into $PHASES_FILE, one JSON line per phase.
TIMING_CONFTEST = """
import json, os, time
import pytest


def _timed(phase):
    @pytest.hookimpl(wrapper=True)
    def hook(item, *args):
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            with open(os.environ["PHASES_FILE"], "a") as out:
                out.write(json.dumps([item.nodeid, phase, time.perf_counter() - started]) + "\\n")
    return hook


pytest_runtest_setup = _timed("setup")
pytest_runtest_call = _timed("call")
pytest_runtest_teardown = _timed("teardown")
"""
FIXTURES = ("task_store", "task_store_in_transaction")


def run_once(fixture: str, count: int, url: str | None, where: Path) -> dict[str, float]:
    """One pytest run of ``count`` tests using ``fixture``: its figures (ms, s)."""
    (where / "conftest.py").write_text(TIMING_CONFTEST)
    path = where / f"test_{fixture}.py"
    path.write_text(TESTS.format(count=count, fixture=fixture))
    phases = where / f"{fixture}.jsonl"
    phases.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "UNIQC_STORE_TEST_URL"}
    env["PHASES_FILE"] = str(phases)
    if url:
        env["UNIQC_STORE_TEST_URL"] = url
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {fixture} run failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    wall = time.perf_counter() - started
    by_test: dict[str, dict[str, float]] = {}
    for line in phases.read_text().splitlines():
        nodeid, phase, seconds = json.loads(line)
        by_test.setdefault(nodeid, {})[phase] = seconds
    tests = list(by_test.values())
    fixture_ms = [(t["setup"] + t["teardown"]) * 1000 for t in tests[1:]]
    return {
        "first_setup_ms": round(tests[0]["setup"] * 1000, 1),
        "setup_teardown_median_ms": round(statistics.median(fixture_ms), 2),
        "setup_teardown_mean_ms": round(statistics.fmean(fixture_ms), 2),
        "call_median_ms": round(statistics.median(t["call"] * 1000 for t in tests[1:]), 2),
        "wall_s": round(wall, 2),
    }


def measure(count: int, url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {f: run_once(f, count, url, Path(tmp)) for f in FIXTURES}
    plain, rolled = (figures[f]["setup_teardown_median_ms"] for f in FIXTURES)
    return {**figures, "per_test_speedup": round(plain / rolled, 1) if rolled else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--url", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.tests, args.url), indent=2))


if __name__ == "__main__":
    main()
