"""The ``uniqc-store`` command: schema commands, contents, archive, export/import
across engines, and one-line errors."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import URL, select, update

from tests import reference_db as ref
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.cli.commands import main, parse_hours
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks

runner = CliRunner()


def plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(main, list(args))
    return result.exit_code, result.output


def test_schema_commands(fresh_url: URL) -> None:
    url = plain(fresh_url)
    if fresh_url.get_backend_name() == "sqlite":  # no file yet: only upgrade creates one
        assert run("current", "--url", url) == (
            3,
            f"error: no task database at {fresh_url.database}; "
            "run `uniqc-store upgrade` to create one\n",
        )
    else:  # an empty server database: no made-up revision 0000
        assert run("current", "--url", url) == (
            0,
            "no schema yet (empty database); run `uniqc-store upgrade`\n",
        )
        code, out = run("check", "--url", url)
        assert code == 1 and "schema version 0" in out
    code, out = run("upgrade", "0002", "--url", url)
    assert code == 0 and out.endswith(": upgraded from schema version 0 to 2\n")
    assert run("upgrade", "--url", url)[1].endswith(
        f": upgraded from schema version 2 to {CURRENT_SCHEMA_VERSION}\n"
    )
    assert run("current", "--url", url)[1] == (
        f"{CURRENT_SCHEMA_VERSION:04d} (schema version {CURRENT_SCHEMA_VERSION} of "
        f"{CURRENT_SCHEMA_VERSION}): up to date\n"
    )
    assert run("check", "--url", url) == (0, "the schema is at head and matches the models\n")
    history = run("history")[1]
    assert "0005  v5: re-key legacy" in history and "0006  v6: keys and timestamps" in history
    assert "0007  v7: lists and counts that do not scan" in history
    assert "0008  v8: keys sort and compare by code point on PostgreSQL" in history
    assert "0009  v9: counts that do not scan on the servers" in history
    assert "0010  v10: an index on ``tasks.update_time``" in history
    assert "0011  v11: PostgreSQL counts inserted and deleted rows per statement" in history
    code, out = run("downgrade", "base", "--yes", "--url", url)
    assert code == 0 and out.endswith(
        f"downgraded from schema version {CURRENT_SCHEMA_VERSION} to 0\n"
    )
    assert run("current", "--url", url) == (
        0,
        "no schema yet (empty database); run `uniqc-store upgrade`\n",
    )


def test_upgrade_sql_prints_instead_of_running(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    code, out = run("upgrade", "--sql", "--url", f"sqlite:///{path}")
    assert code == 0
    assert "CREATE TABLE IF NOT EXISTS tasks" in out
    assert f"PRAGMA user_version = {CURRENT_SCHEMA_VERSION}" in out
    assert (
        not path.exists() or sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0
    )
    pg = runner.invoke(main, ["upgrade", "--sql", "--url", "postgresql+psycopg://u:pw@nohost/db"])
    assert (
        pg.exit_code == 0
        and "CREATE TABLE IF NOT EXISTS tasks" in pg.output
        and "BEGIN;" in pg.output
    )


def seed(store: TaskStore) -> None:
    old = (datetime.now(timezone.utc) - timedelta(hours=100)).isoformat()
    for i in range(4):
        status = ("success", "running")[i % 2]
        info = TaskInfo(f"uqt_{i}", f"b{i % 2}", status, result={"i": i}, metadata={"n": "😀"})
        store.save(info)
        store.save_shard(TaskShard(f"uqt_{i}", 0, f"plat-{i}", f"b{i % 2}"))
    with store.engine.begin() as conn:
        conn.execute(update(tasks).values(update_time=old))


def test_contents_and_archive_commands(store: TaskStore) -> None:
    seed(store)
    url = plain(store.url)
    code, out = run("stats", "--url", url)
    assert code == 0 and "live: 4  archived: 0" in out and "running" in out
    code, out = run("list", "--url", url, "--status", "success", "--json")
    assert code == 0 and {json.loads(line)["task_id"] for line in out.splitlines()} == {
        "uqt_0",
        "uqt_2",
    }
    assert "uqt_3" in run("list", "--url", url, "--limit", "1")[1]
    shown = json.loads(run("show", "uqt_1", "--url", url)[1])
    assert shown["shards"][0]["platform_task_id"] == "plat-1" and shown["metadata"] == {"n": "😀"}
    assert run("show", "nope", "--url", url) == (1, "error: no task 'nope'\n")

    code, out = run("archive-expired", "--older-than", "72h", "--dry-run", "--url", url)
    assert code == 0 and out.splitlines()[0] == "would archive 2 task(s)"
    assert store.count_archived() == 0
    code, out = run("archive-expired", "--older-than", "3d", "--url", url)
    assert out == "archived 2 task(s); skipped 2 unfinished, 0 already archived\n"
    assert json.loads(run("show", "uqt_0", "--url", url)[1])["archived_at"]
    assert run("restore", "uqt_0", "--url", url) == (0, "restored uqt_0\n")
    assert run("restore", "uqt_0", "--url", url)[0] == 1
    assert run("archive-expired", "--older-than", "soon", "--url", url)[0] == 2
    assert store.count() == 3


def test_parse_hours() -> None:
    assert [parse_hours(t) for t in ("72h", "3d", "90m", "1w", "36", "7200s")] == [
        72,
        72,
        1.5,
        168,
        36,
        2,
    ]


def dump(store: TaskStore) -> dict[str, list[tuple[object, ...]]]:
    with store.engine.connect() as conn:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(select(t)))
            for t in (tasks, task_shards, archived_tasks, archived_task_shards)
        }


def test_export_import_round_trip_between_engines(store: TaskStore, tmp_path: Path) -> None:
    """SQLite -> this engine -> SQLite gives identical rows."""
    source = TaskStore(cache_dir=tmp_path / "src")
    seed(source)
    source.archive_task("uqt_2")
    source.save(TaskInfo(task_id="uqt_big", backend="b", result={"x": "y" * 100_000}))
    exported = tmp_path / "one.jsonl"
    assert run("export", str(exported), "--url", plain(source.url))[0] == 0
    code, out = run("import", str(exported), "--url", plain(store.url))
    assert (
        code == 0
        and out == "imported 4 tasks, 3 task_shards, 1 archived_tasks, 1 archived_task_shards\n"
    )
    assert dump(store) == dump(source)
    again = tmp_path / "two.jsonl"
    assert run("export", str(again), "--url", plain(store.url))[0] == 0
    target = TaskStore(cache_dir=tmp_path / "dst")
    assert run("import", str(again), "--url", plain(target.url))[0] == 0
    assert dump(target) == dump(source)
    source.close()
    target.close()


@pytest.mark.parametrize(
    ("second_line", "error"),
    [
        ('{"table": "tasks", "row": {"task_id": 1}}', "line 2: tasks rows need the columns"),
        ('{"table": "tasks", "row": {"task_id"', "line 2: not JSON (Expecting ':' delimiter at"),
        ('{"kind": "tasks"}', 'line 2: not an export record (expected {"table": ...'),
        ('{"table": "jobs", "row": {}}', "line 2: unknown table 'jobs'"),
    ],
)
def test_bad_import_writes_nothing(
    store: TaskStore, tmp_path: Path, second_line: str, error: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    row = {"task_id": "uqt_1", "backend": "b", "status": "success", "shots": 1}
    row |= {"submit_time": "t", "update_time": "t", "result_json": None}
    good_row = {"table": "tasks", "row": {**row, "metadata_json": "{}", "error_message": None}}
    bad.write_text(json.dumps(good_row) + "\n" + second_line + "\n")
    code, out = run("import", str(bad), "--url", plain(store.url))
    assert code == 1 and out.startswith(f"error: {error}")
    assert store.count() == 0


def console_script(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("uniqc-store")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


def test_errors_are_one_line_without_password(tmp_path: Path) -> None:
    foreign = tmp_path / "tasks.sqlite"
    before = ref.foreign_file(foreign, 7)
    cases = [  # foreign: 4 (incompatible); unreachable or no driver: 3 (unavailable)
        (("list", "--url", f"sqlite:///{foreign}"), 4),
        (("upgrade", "--url", f"sqlite:///{foreign}"), 4),
        (("current", "--url", "postgresql+psycopg://alice:s3cret@127.0.0.1:9/db"), 3),
        (("stats", "--url", "mysql+pymysql://alice:s3cret@127.0.0.1:9/db"), 3),
    ]
    for args, status in cases:
        result = console_script(*args)
        assert result.returncode == status, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr + result.stdout
    assert foreign.read_bytes() == before
    unknown = console_script("list", "--url", "nonsense://alice:s3cret@")  # a usage error: 2
    assert unknown.returncode == 2 and "s3cret" not in unknown.stderr + unknown.stdout
    assert unknown.stderr == (
        "error: --url: no SQLAlchemy dialect for 'nonsense': use a URL starting with "
        "sqlite://, postgresql+psycopg:// or mysql+pymysql://\n"
    )


def test_server_behind_head_is_one_line(store: TaskStore, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite files are upgraded on open")
    url = plain(store.url)
    assert run("downgrade", "0004", "--url", url)[0] == 0
    code, out = run("list", "--url", url)
    assert code == 4 and "schema version 4" in out and "uniqc-store upgrade" in out
    assert run("upgrade", "--url", url)[0] == 0


def test_serve_runs_the_api(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("uniqc-store")
    env = {**os.environ, "UNIQC_STORE_URL": f"sqlite:///{tmp_path / 'tasks.sqlite'}"}
    env.pop("UNIQC_STORE_API_TOKEN", None)
    TaskStore(tmp_path).close()  # only `upgrade` (or the library) creates a database
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/tasks/counts", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        assert response.json()["total"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


SECRET_RECORD = {"api_key": "k-123", "region": "cn", "headers": {"Authorization": "Bearer abc"}}


def test_show_and_list_json_redact_unless_revealed(store: TaskStore) -> None:
    store.save(
        TaskInfo(
            "uqt_s",
            "b",
            "failed",
            result={"token": "t-1", "counts": {"0": 3}},
            metadata=SECRET_RECORD,
            error_message="upstream: token=abc",
        )
    )
    store.save_shard(TaskShard("uqt_s", 0, "plat", "b", error_message="password=pw"))
    url = plain(store.url)
    shown = json.loads(run("show", "uqt_s", "--url", url)[1])
    assert shown["metadata"] == {
        "api_key": "[REDACTED]",
        "region": "cn",
        "headers": {"Authorization": "[REDACTED]"},
    }
    assert shown["result"] == {"token": "[REDACTED]", "counts": {"0": 3}}
    assert shown["error_message"] == "upstream: token=***"
    assert shown["shards"][0]["error_message"] == "password=***"
    raw = json.loads(run("show", "uqt_s", "--reveal", "--url", url)[1])
    assert raw["metadata"] == SECRET_RECORD and raw["shards"][0]["error_message"] == "password=pw"

    listed = json.loads(run("list", "--json", "--url", url)[1])
    assert listed["metadata"]["api_key"] == listed["result"]["token"] == "[REDACTED]"
    assert listed["error_message"] == "upstream: token=***"
    revealed = json.loads(run("list", "--json", "--reveal", "--url", url)[1])
    assert revealed["metadata"] == SECRET_RECORD and revealed["error_message"].endswith("abc")
    assert "k-123" not in run("list", "--url", url)[1]


def test_export_is_lossless_and_says_so(store: TaskStore, tmp_path: Path) -> None:
    store.save(TaskInfo("uqt_s", "b", metadata=SECRET_RECORD))
    out = tmp_path / "backup.jsonl"
    assert run("export", str(out), "--url", plain(store.url))[0] == 0
    assert "k-123" in out.read_text() and "Bearer abc" in out.read_text()
    help_text = " ".join(run("export", "--help")[1].split())
    assert "lossless backup" in help_text and "NOT redacted" in help_text


@pytest.mark.parametrize("token", ["", "   ", " padded", "tök3n"])
def test_serve_refuses_an_unusable_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    calls = serve_calls(monkeypatch)
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", token)
    result = CliRunner().invoke(main, ["serve", "--url", f"sqlite:///{tmp_path / 't.sqlite'}"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "UNIQC_STORE_API_TOKEN" in lines[0]
    assert calls == [] and not (tmp_path / "t.sqlite").exists()  # refused before opening


@pytest.mark.parametrize(
    ("host", "warned"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True),
     ("192.168.1.5", True), ("tasks.example", True)],
)  # fmt: skip
def test_serve_warns_without_a_token_off_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, warned: bool
) -> None:
    calls = serve_calls(monkeypatch)
    monkeypatch.delenv("UNIQC_STORE_API_TOKEN", raising=False)
    args = ["serve", "--host", host, "--url", f"sqlite:///{tmp_path / 't.sqlite'}"]
    TaskStore(url=f"sqlite:///{tmp_path / 't.sqlite'}").close()  # serve creates no database
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and calls == [host]
    assert f"serving sqlite:///{tmp_path / 't.sqlite'} on http://{host}:8000/" in result.output
    assert ("warning: serving on" in result.output) is warned
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", "t0ken")
    assert "warning" not in CliRunner().invoke(main, args).output


def serve_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stub uvicorn's ``Server.run``: the hosts ``serve`` would have listened on."""
    import uvicorn

    calls: list[str] = []

    def run(server: uvicorn.Server, sockets: object = None) -> None:
        calls.append(server.config.host)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return calls


def test_show_finds_a_platform_id_on_every_engine(store: TaskStore) -> None:
    """The platform-id look-up of ``show`` (live and archived shards) on each server."""
    url = plain(store.url)
    for task_id, backend in (("uqt_a", "b1"), ("uqt_b", "b2")):
        store.save(TaskInfo(task_id, backend, "running"))
        store.save_shard(TaskShard(task_id, 0, "JOB-1", backend))
    store.save_shard(TaskShard("uqt_a", 1, "JOB-2", "b1"))
    store.archive_task("uqt_a")
    code, out = run("show", "JOB-2", "--url", url)
    assert code == 0 and '"task_id": "uqt_a"' in out
    code, out = run("show", "JOB-1", "--url", url)
    assert code == 1 and "uqt_a (b1), uqt_b (b2)" in out
    assert run("show", "job-2", "--url", url)[0] == 1  # ids compare exactly, case included


def test_purge_command(store: TaskStore) -> None:
    """``purge`` on every engine: dry run lists, the run deletes, --keep-last keeps."""
    url = plain(store.url)
    for i in range(4):
        task_id = f"uqt_p{i}"
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"{task_id}-x", "b"))
        assert store.archive_task(task_id)
        stamp = (datetime.now(timezone.utc) - timedelta(days=40 - i)).isoformat()
        with store.engine.begin() as conn:
            table = archived_tasks
            conn.execute(update(table).where(table.c.task_id == task_id).values(archived_at=stamp))
    assert run("purge", "--url", url)[0] == 2  # --older-than is required
    assert run("purge", "--older-than", "30d", "--batch-size", "0", "--url", url)[0] == 2
    code, out = run("purge", "--older-than", "30d", "--keep-last", "1", "--dry-run", "--url", url)
    assert code == 0
    assert out.splitlines() == [
        "would delete 3 archived task(s) and 3 archived shard(s)",
        "uqt_p0",
        "uqt_p1",
        "uqt_p2",
    ]
    assert store.count_archived() == 4
    code, out = run(
        "purge", "--older-than", "30d", "--keep-last", "1", "--batch-size", "2", "--url", url
    )
    assert (code, out) == (
        0,
        "deleted 3 archived task(s) and 3 archived shard(s) in 2 transaction(s)\n",
    )
    assert [t.task_id for t in store.list_archived()] == ["uqt_p3"]
    assert len(store.get_archived_shards("uqt_p3")) == 1
    assert run("purge", "--older-than", "1h", "--url", url)[1].startswith("deleted 1 archived")
