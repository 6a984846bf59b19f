"""``python -m benchmarks.served_api`` on a small SQLite store: the async server (the real
app with its hot routes and feed on ``AsyncTaskStore``, the part of the benchmark no other
test serves) answers every REST call and delivers every write to every stream. (No
timings here: the benchmark is the judge.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

served_api = pytest.importorskip("benchmarks.served_api", reason="run from the repository root")


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    options = ["--seconds", "2.5", "--repeats", "1", "--sse", "4", "--rest", "2"]
    assert (
        served_api.main(
            [
                *options,
                "--tasks",
                "30",
                "--engines",
                "sqlite",
                "--stores",
                "async",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    runs = json.loads(out.read_text())["sqlite"]
    assert [r["variant"] for r in runs] == ["async"]
    for run in runs:
        assert run["rest_requests"] > 0
        assert run["errors"] == {"rest": 0, "sse": 0}
        assert run["writes"] >= 1 and run["streams_with_events"] == 4
        assert run["missed"] == 0
