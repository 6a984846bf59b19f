"""``python -m benchmarks.plugin_rollback``: what the pytest plugin's fixtures cost per test.

Runs ``--tests`` trivial tests (save one task, count) in a pytest sub-process with
the ``task_store`` fixture (a store made per test; on a server its rows deleted
after it) and with ``task_store_in_transaction`` (one store per session, a
transaction rolled back per test), and the same number of tests using no fixture
(pytest's own cost). The per-test cost of a fixture is its run's wall time less
that baseline's, divided by the number of tests; the session's one-off work (a
scratch database, its migration) is in it, spread over the tests.

``--url``: a server to make the scratch databases on (as ``UNIQC_STORE_TEST_URL``;
default: SQLite in memory). Nothing outside the plugin's scratch databases is touched.

    python -m benchmarks.plugin_rollback --tests 200
    python -m benchmarks.plugin_rollback --url postgresql+psycopg://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = """
import pytest
from uniqc_store import TaskInfo


@pytest.mark.parametrize("n", range({count}))
def test_trivial({fixture}n):
    {body}
"""
BODY = (
    "store = {fixture}\n"
    '    store.save(TaskInfo(task_id="uqt_1", backend="b"))\n'
    "    assert store.count() == 1"
)
FIXTURES = ("none", "task_store", "task_store_in_transaction")


def run_once(fixture: str, count: int, url: str | None, where: Path) -> float:
    """Wall seconds of one pytest run of ``count`` tests using ``fixture``."""
    body = "assert n >= 0" if fixture == "none" else BODY.format(fixture=fixture)
    argument = "" if fixture == "none" else f"{fixture}, "
    path = where / f"test_{fixture}.py"
    path.write_text(TESTS.format(count=count, fixture=argument, body=body))
    env = {k: v for k, v in os.environ.items() if k != "UNIQC_STORE_TEST_URL"}
    if url:
        env["UNIQC_STORE_TEST_URL"] = url
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    started = time.perf_counter()
    subprocess.run(command, cwd=where, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(count: int, url: str | None, rounds: int) -> dict[str, float]:
    """The best of ``rounds`` wall times per fixture, and the per-test costs (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        best = {f: min(run_once(f, count, url, Path(tmp)) for _ in range(rounds)) for f in FIXTURES}
    figures = {f"{f}_wall_s": round(seconds, 2) for f, seconds in best.items()}
    for fixture in FIXTURES[1:]:
        per_test = (best[fixture] - best["none"]) / count * 1000
        figures[f"{fixture}_ms_per_test"] = round(per_test, 2)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs per fixture (best is kept)")
    parser.add_argument("--url", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.tests, args.url, args.rounds), indent=2))


if __name__ == "__main__":
    main()
