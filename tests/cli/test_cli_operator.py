"""``uniqc-store`` as an operator uses it in a terminal (issue 17 part 2): whole ids,
quiet pipes, exit statuses by kind, archive/delete, stats, honest schema messages,
URLs as typed, and progress only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import URL, update

from tests import reference_db as ref
from uniqc_store import TaskInfo, TaskShard, TaskStore, generate_uniqc_task_id
from uniqc_store.cli.commands import main
from uniqc_store.db.urls import redact
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.schema.tables import tasks

EXE = str(Path(sys.executable).with_name("uniqc-store"))
LONG_BACKEND = "originq:WK_C180_a_rather_long_backend_name_for_the_table"


def run(*args: str, input: str | None = None, columns: int = 80) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input, env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[TaskStore, str]]:
    """A SQLite store (made by the library) and its URL as an operator types it."""
    path = tmp_path / "tasks.sqlite"
    store = TaskStore(url=f"sqlite:///{path}")
    try:
        yield store, f"sqlite:///{path}"
    finally:
        store.close()


def seed(store: TaskStore, count: int, backend: str = LONG_BACKEND) -> list[str]:
    infos = [
        TaskInfo(generate_uniqc_task_id(), backend, "success", shots=1000) for _ in range(count)
    ]
    store.save_many(infos)
    return [info.task_id for info in infos]


def test_list_never_cuts_ids_at_80_columns(db: tuple[TaskStore, str]) -> None:
    store, url = db
    ids = seed(store, 3)
    code, out = run("list", "--url", url, columns=80)
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    for task_id in ids:  # whole, on one line, copyable
        assert any(task_id in line for line in lines), (task_id, out)
    assert "…" not in out  # Rich's ellipsis: nothing was cut


def pipe_into_head(command: str) -> subprocess.CompletedProcess[str]:
    script = f'{command} | head -1; echo "status=${{PIPESTATUS[0]}}" >&2'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", ["list --limit 2000", "list --limit 2000 --json", "export -"])
def test_piping_into_head_exits_quietly(db: tuple[TaskStore, str], args: str) -> None:
    store, url = db
    seed(store, 2000)  # far more than a pipe's 64 KiB buffer
    result = pipe_into_head(f"{EXE} {args} --url {url}")
    assert len(result.stdout.splitlines()) == 1
    # killed by SIGPIPE like cat or seq (the shell sees 141), or done writing before
    # head left (one large write); never an error message
    assert result.stderr in ("status=141\n", "status=0\n"), result.stderr


def test_exit_status_by_kind(tmp_path: Path, db: tuple[TaskStore, str]) -> None:
    store, url = db
    seed(store, 1)
    for usage in (
        ("list", "--status", "done"),
        ("list", "--limit", "-1"),
        ("archive-expired", "--older-than", "5x"),
        ("upgrade", "sideways"),
    ):
        code, out = run(*usage, "--url", url)
        assert code == 2, (usage, out)
    code, out = run("archive-expired", "--older-than", "5x", "--url", url)
    assert "Invalid value for '--older-than': '5x' is not a duration" in out
    assert run("show", "uqt_nope", "--url", url) == (1, "error: no task 'uqt_nope'\n")
    assert run("archive", "uqt_nope", "--url", url) == (1, "error: no task 'uqt_nope'\n")
    assert run("restore", "uqt_nope", "--url", url) == (1, "error: no archived task 'uqt_nope'\n")
    absent = tmp_path / "nowhere" / "tasks.sqlite"
    assert run("list", "--url", f"sqlite:///{absent}")[0] == 3
    unreachable = "postgresql+psycopg://alice:s3cret@127.0.0.1:9/db"
    code, out = run("stats", "--url", unreachable)
    assert code == 3 and "s3cret" not in out
    foreign = tmp_path / "foreign.sqlite"
    ref.foreign_file(foreign, 7)
    assert run("list", "--url", f"sqlite:///{foreign}")[0] == 4
    too_new = tmp_path / "new.sqlite"
    with sqlite3.connect(too_new) as conn:
        conn.execute("PRAGMA application_id = 1431193923")
        conn.execute(f"PRAGMA user_version = {CURRENT_SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY)")
    code, out = run("current", "--url", f"sqlite:///{too_new}")
    assert code == 4 and f"schema version {CURRENT_SCHEMA_VERSION + 1}" in out


def test_help_documents_url_and_exit_statuses() -> None:
    out = " ".join(run("list", "--help", columns=200)[1].split())
    assert "UNIQC_STORE_URL" in out and "~/.uniqc/cache/tasks.sqlite" in out
    top = run("--help", columns=200)[1]
    for line in ("0  success", "1  failed", "2  usage", "3  unavailable", "4  incompatible"):
        assert line in top
    assert max(len(line) for line in run("list", "--help")[1].splitlines()) <= 80


def test_archive_and_delete_one_task(db: tuple[TaskStore, str]) -> None:
    store, url = db
    keep, gone = seed(store, 2)
    store.save_shard(TaskShard(gone, 0, "plat-1", LONG_BACKEND))
    assert run("archive", keep, "--url", url) == (0, f"archived {keep}\n")
    assert store.get(keep) is None and store.get_archived(keep) is not None
    assert run("archive", keep, "--url", url) == (1, f"error: task '{keep}' is already archived\n")

    code, out = run("delete", gone, "--url", url, input="n\n")
    assert code == 1 and "(success, 1 shard(s))? This cannot be undone" in out
    assert store.get(gone) is not None
    code, out = run("delete", gone, "--url", url, input="y\n")
    assert code == 0 and out.endswith(f"deleted task {gone}\n")
    assert store.get(gone) is None and store.get_shards(gone) == []
    assert run("delete", gone, "--yes", "--url", url) == (1, f"error: no task '{gone}'\n")

    code, out = run("delete", keep, "--yes", "--url", url)
    assert code == 1 and "(it is archived: add --archived)" in out
    assert run("delete", keep, "--archived", "--yes", "--url", url) == (
        0,
        f"deleted archived task {keep}\n",
    )
    assert store.get_archived(keep) is None


def test_delete_works_on_running_tasks(db: tuple[TaskStore, str]) -> None:
    store, url = db
    store.save(TaskInfo("uqt_run", "b", "running"))
    assert run("delete", "uqt_run", "--yes", "--url", url) == (0, "deleted task uqt_run\n")


def test_stats_json_and_human_units(db: tuple[TaskStore, str]) -> None:
    store, url = db
    ids = seed(store, 3)
    store.save(TaskInfo("uqt_r", "dummy", "running"))
    store.archive_task(ids[0])
    code, out = run("stats", "--json", "--url", url)
    report = json.loads(out)
    assert code == 0 and report["url"] == url and report["total"] == 4
    assert report["live"]["by_status"] == {"running": 1, "success": 2}
    assert report["live"]["by_backend"] == {"dummy": 1, LONG_BACKEND: 2}
    assert report["archived"]["total"] == 1 and report["archived"]["by_status"] == {"success": 1}
    assert report["size_bytes"] >= Path(url.removeprefix("sqlite:///")).stat().st_size > 0
    code, out = run("stats", "--url", url, columns=80)
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"database: {url}"  # never cut, on its own line
    assert lines[1].strip() == "task counts" and all(len(line) <= 80 for line in lines[1:])
    assert lines[-1].startswith("live: 3  archived: 1  size: ") and lines[-1].endswith(" KiB")


def test_schema_commands_say_what_they_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.sqlite'}"
    assert run("upgrade", "0003", "--url", url) == (
        0,
        f"{url}: upgraded from schema version 0 to 3\n",
    )
    head = CURRENT_SCHEMA_VERSION
    assert run("upgrade", "--url", url)[1] == f"{url}: upgraded from schema version 3 to {head}\n"
    assert run("upgrade", "--url", url) == (
        0,
        f"{url}: already at schema version {CURRENT_SCHEMA_VERSION} (head); nothing to do\n",
    )
    assert run("upgrade", "0003", "--url", url) == (
        0,
        f"{url}: nothing was done; the database is at schema version {CURRENT_SCHEMA_VERSION}, "
        "already past 0003 "
        "(use downgrade to go back)\n",
    )
    # check prints its own verdict only, not Alembic's "No new upgrade operations detected."
    result = subprocess.run([EXE, "check", "--url", url], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "the schema is at head and matches the models\n",
        "",
    )


def test_current_on_an_empty_server_database(fresh_url: URL) -> None:
    if fresh_url.get_backend_name() == "sqlite":
        pytest.skip("an empty SQLite file is no task database at all (exit 3)")
    assert run("current", "--url", plain(fresh_url)) == (
        0,
        "no schema yet (empty database); run `uniqc-store upgrade`\n",
    )


def test_urls_are_printed_as_given(module_url: URL) -> None:
    """Not ``sqlite+pysqlite:////...``, not with an added ``?charset=utf8mb4``."""
    given = plain(module_url)
    if module_url.get_backend_name() == "sqlite":
        given = f"sqlite:///{module_url.database}"
    TaskStore(url=module_url, auto_migrate=True).close()
    report = json.loads(run("stats", "--json", "--url", given)[1])
    assert report["url"] == redact(given)
    assert "charset" not in report["url"] and "pysqlite" not in report["url"]
    # Measured on every engine: the file on SQLite, the dialect table's size SQL on servers.
    assert isinstance(report["size_bytes"], int) and report["size_bytes"] > 0
    assert run("upgrade", "--url", given)[1].startswith(f"{redact(given)}: already at")


def test_server_errors_show_the_url_as_given() -> None:
    given = "mysql+pymysql://alice:s3cret@127.0.0.1:9/db"
    code, out = run("stats", "--url", given)
    assert code == 3 and "mysql+pymysql://alice:***@127.0.0.1:9/db:" in out
    assert "charset" not in out


def test_the_migration_lock_file_stays_and_read_only_commands_make_none(tmp_path: Path) -> None:
    """``tasks.sqlite.lock`` is kept on purpose (docs/cli.md): unlinking a
    file that others may be blocked on in ``flock`` lets a later upgrader lock a new
    file of the same name while the first still runs, breaking mutual exclusion."""
    path = tmp_path / "tasks.sqlite"
    url = f"sqlite:///{path}"
    assert run("upgrade", "--url", url)[0] == 0
    lock = Path(f"{path}.lock")
    assert lock.exists() and lock.stat().st_size == 0  # empty: it only carries the flock
    lock.unlink()
    for args in (("list",), ("stats",), ("current",), ("check",), ("show", "uqt_x")):
        run(*args, "--url", url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.sqlite"]


def on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run with stderr on a pseudo-terminal (stdout piped); what the terminal showed."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    shown = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=120)
    os.close(primary)
    assert proc.returncode == 0
    return shown.decode("utf-8", "replace")


def test_progress_on_a_terminal_only(db: tuple[TaskStore, str], tmp_path: Path) -> None:
    store, url = db
    seed(store, 10_001, backend="b")
    old = (datetime.now(timezone.utc) - timedelta(hours=100)).isoformat()
    with store.engine.begin() as conn:
        conn.execute(update(tasks).values(update_time=old))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    env.pop("CI", None)
    out = tmp_path / "backup.jsonl"
    shown = on_a_terminal([EXE, "export", str(out), "--url", url], env)
    assert "exporting" in shown and "━" in shown  # a Rich bar
    shown = on_a_terminal([EXE, "import", str(out), "--url", url], env)
    assert "importing" in shown
    shown = on_a_terminal([EXE, "archive-expired", "--url", url], env)
    assert "archiving expired tasks" in shown
    assert store.count_archived() == 10_001
    shown = on_a_terminal([EXE, "purge", "--older-than", "0", "--url", url], env)
    assert "purging the archive" in shown and "━" in shown
    assert store.count_archived() == 0
    piped = subprocess.run(
        [EXE, "export", str(out), "--url", url], capture_output=True, text=True, env=env
    )
    assert piped.stderr == "" and piped.stdout.startswith("exported 0 tasks")


def console_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UNIQC_STORE_URL"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_a_bare_path_as_url_names_the_sqlite_url(tmp_path: Path) -> None:
    path = tmp_path / "x" / "tasks.sqlite"
    for given, meant in (
        (str(path), f"sqlite:///{path}"),
        ("tasks.sqlite", "sqlite:///tasks.sqlite"),
    ):
        result = console_script("list", "--url", given)
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"error: --url: {given!r} is a file path, not a database URL: use {meant}\n",
        )
    assert not (tmp_path / "x").exists()  # nothing was created
    # what may hold a password is never echoed back
    result = console_script("list", "--url", "alice:s3cret@db.example/tasks")
    assert result.returncode == 2 and "s3cret" not in result.stderr
    assert "not a database URL" in result.stderr


def test_history_takes_url_and_marks_the_current_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.sqlite'}"
    plain_history = console_script("history")
    assert plain_history.returncode == 0 and "(current)" not in plain_history.stdout
    assert console_script("upgrade", "0004", "--url", url).returncode == 0
    result = console_script("history", "--url", url)
    assert result.returncode == 0, result.stderr
    marked = [line for line in result.stdout.splitlines() if line.endswith("  (current)")]
    assert len(marked) == 1 and marked[0].startswith("0004  v4: ")
    assert result.stdout.replace("  (current)", "") == plain_history.stdout
    missing = console_script("history", "--url", f"sqlite:///{tmp_path / 'none.sqlite'}")
    assert missing.returncode == 3 and "no task database at" in missing.stderr


def test_show_takes_a_platform_id(db: tuple[TaskStore, str]) -> None:
    store, url = db
    mine, other = seed(store, 2)
    store.save_shard(TaskShard(mine, 0, "plat-only-mine", "originq:a"))
    store.save_shard(TaskShard(mine, 1, "plat-shared", "originq:a"))
    store.save_shard(TaskShard(other, 0, "plat-shared", "quafu:b"))
    result = console_script("show", "plat-only-mine", "--url", url)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["task_id"] == mine and len(shown["shards"]) == 2
    assert result.stderr == f"platform id plat-only-mine is a shard of task {mine}\n"
    result = console_script("show", "plat-shared", "--url", url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "error: platform id 'plat-shared' is a shard of several tasks: "
    )
    assert f"{mine} (originq:a)" in result.stderr and f"{other} (quafu:b)" in result.stderr
    store.archive_task(mine)  # archived shards are found too
    result = console_script("show", "plat-only-mine", "--url", url)
    assert result.returncode == 0 and json.loads(result.stdout)["task_id"] == mine
    result = console_script("show", "plat-nowhere", "--url", url)
    assert (result.returncode, result.stderr) == (1, "error: no task 'plat-nowhere'\n")


def _app_file(path: Path) -> Path:
    """A SQLite file of an application's own (its tables, no application_id)."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        conn.execute("INSERT INTO orders (item) VALUES ('qubits')")
    conn.close()
    return path


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    return names


def test_upgrade_adds_our_tables_to_an_app_file_only_when_asked_as_alembic_does(
    tmp_path: Path,
) -> None:
    """``uniqc-store upgrade --allow-foreign-tables`` and ``alembic upgrade head`` agree;
    without the option the command refuses (exit 4) and writes nothing."""
    ours, theirs = _app_file(tmp_path / "app.sqlite"), _app_file(tmp_path / "app2.sqlite")
    before = ours.read_bytes()
    refused = subprocess.run(
        [EXE, "upgrade", "--url", f"sqlite:///{ours}"], capture_output=True, text=True
    )
    assert refused.returncode == 4, refused
    assert "--allow-foreign-tables" in refused.stderr and ours.read_bytes() == before
    done = subprocess.run(
        [EXE, "upgrade", "--allow-foreign-tables", "--url", f"sqlite:///{ours}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done
    assert f"upgraded from schema version 0 to {CURRENT_SCHEMA_VERSION}" in done.stdout
    alembic = str(Path(sys.executable).with_name("alembic"))
    root = Path(__file__).resolve().parents[2]
    by_alembic = subprocess.run(
        [
            alembic,
            "-c",
            str(root / "alembic.ini"),
            "-x",
            f"url=sqlite:///{theirs}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert by_alembic.returncode == 0, by_alembic
    assert _tables(ours) == _tables(theirs) >= {"orders", "tasks", "uniqc_store_alembic_version"}
    with TaskStore(
        url=f"sqlite:///{ours}"
    ) as store:  # now the store's too, and the app's rows kept
        store.save(TaskInfo("uqt_shared", "dummy"))
        assert store.count() == 1
    with sqlite3.connect(ours) as conn:
        assert conn.execute("SELECT item FROM orders").fetchall() == [("qubits",)]
    conn.close()
    again = subprocess.run(
        [EXE, "upgrade", "--url", f"sqlite:///{ours}"], capture_output=True, text=True
    )
    assert again.returncode == 0
    assert f"already at schema version {CURRENT_SCHEMA_VERSION}" in again.stdout
