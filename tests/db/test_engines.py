"""Migrations and payload limits on every engine (PostgreSQL and MariaDB/MySQL
when their URLs are set): CLI round trips, the v5 data migration, atomicity
where the engine has transactional DDL, safe re-runs where it does not, and
concurrent deployers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import URL, inspect, select, text

from tests import reference_db as ref
from tests.alembic_runner import AlembicResult, run_alembic
from tests.commit_dropper import CommitDropper
from uniqc_store import (
    DatabaseUnavailableError,
    MissingParentTaskError,
    PayloadTooLargeError,
    TaskInfo,
    TaskShard,
    TaskStore,
)
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.repository.statements import stored_binds
from uniqc_store.schema.tables import task_shards, tasks

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def alembic_cli(url: URL, *args: str) -> AlembicResult:
    plain = url.render_as_string(hide_password=False)
    return run_alembic("-x", f"url={plain}", *args)


def test_the_real_alembic_command_line(tmp_path: Path) -> None:
    """One real ``python -m alembic`` process per command shape; the rest of the suite
    runs the same command line in-process (``tests/alembic_runner.py``)."""
    url = f"sqlite:///{tmp_path / 'tasks.sqlite'}"

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )

    upgraded = alembic("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade 0005 -> 0006" in upgraded.stderr  # the ini's logging applies
    checked = alembic("check")
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout
    downgraded = alembic("downgrade", "-7")
    assert downgraded.returncode == 0, downgraded.stderr
    assert alembic("check").returncode != 0  # not at head: an exit code says so
    sql = alembic("upgrade", "0004:head", "--sql")
    assert sql.returncode == 0, sql.stderr
    assert "UPDATE uniqc_store_alembic_version SET version_num='0005'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0006'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0007'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0008'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0009'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0010'" in sql.stdout
    assert "UPDATE uniqc_store_alembic_version SET version_num='0011'" in sql.stdout
    engine = create_store_engine(url)
    with engine.connect() as conn:
        assert database_version(conn) == 4  # --sql printed the SQL and ran none of it
    engine.dispose()


def test_cli_upgrade_check_downgrade(fresh_url: URL) -> None:
    for args in (("upgrade", "head"), ("check",), ("downgrade", "base"), ("upgrade", "head")):
        result = alembic_cli(fresh_url, *args)
        assert result.returncode == 0, result.stderr
    engine = create_store_engine(fresh_url)
    with engine.connect() as conn:
        assert database_version(conn) == CURRENT_SCHEMA_VERSION
        assert set(inspect(conn).get_table_names()) >= {
            "tasks",
            "archived_tasks",
            "task_shards",
            "archived_task_shards",
        }
    engine.dispose()


def schema_facts(url: URL) -> dict[str, dict[str, object]]:
    """The four tables as the database reflects them: columns, keys, indexes, options."""
    engine = create_store_engine(url)
    with engine.connect() as conn:
        inspector = inspect(conn)
        facts = {
            table: {
                "columns": [
                    (c["name"], repr(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table),
                "foreign_keys": inspector.get_foreign_keys(table),
                "indexes": sorted(inspector.get_indexes(table), key=lambda i: str(i["name"])),
                "options": inspector.get_table_options(table),
            }
            for table in ("tasks", "archived_tasks", "task_shards", "archived_task_shards")
        }
    engine.dispose()
    return facts


def test_the_tables_create_what_the_migrations_create(fresh_url: URL) -> None:
    """``metadata.create_all`` (the Core tables the repository and the ORM use) builds
    the schema the chain builds, on every engine, MySQL's table options included."""
    from uniqc_store.schema.tables import metadata

    engine = create_store_engine(fresh_url)
    upgrade(engine)
    migrated = schema_facts(fresh_url)
    downgrade(engine, "base")
    metadata.create_all(engine)
    engine.dispose()
    created = schema_facts(fresh_url)
    assert created == migrated
    if fresh_url.get_backend_name() == "mysql":
        assert created["tasks"]["options"]["mysql_default charset"] == "utf8mb4"
        assert created["tasks"]["options"]["mysql_collate"] == "utf8mb4_bin"


def test_v5_data_migration_and_its_downgrade(fresh_url: URL) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0004")
    rows = ref.legacy_rows(2500)  # more than one batch
    child = ref.child_shard(rows[0]["task_id"])
    with engine.begin() as conn:
        conn.execute(tasks.insert().values(stored_binds(tasks)), rows)  # JSON as raw text
        conn.execute(task_shards.insert(), [child])  # a shard already under a legacy id
    upgrade(engine)
    with engine.connect() as conn:
        assert (
            conn.execute(select(tasks.c.task_id).where(tasks.c.task_id.like("plat-%"))).first()
            is None
        )
        shards = {r.platform_task_id: r for r in conn.execute(select(task_shards)).all()}
        migrated = {r.task_id: r for r in conn.execute(select(tasks)).all()}
    assert len(shards) == 2501 and len(migrated) == 2500
    moved = shards["sub-job"]
    assert moved.uniqc_task_id == shards[rows[0]["task_id"]].uniqc_task_id
    assert (moved.shard_index, shards[rows[0]["task_id"]].shard_index) == (0, 1)
    for row in rows[:50]:
        shard = shards[row["task_id"]]
        parent = migrated[shard.uniqc_task_id]
        expected = ref.expected_metadata(row["metadata_json"], row["task_id"])
        assert parent.metadata_json == expected  # the models' JSONText decodes it
        assert (parent.status, parent.shots, parent.error_message) == (
            row["status"],
            row["shots"],
            row["error_message"],
        )
    downgrade(engine, "0004")
    with engine.connect() as conn:
        restored = dict(conn.execute(text("SELECT task_id, metadata_json FROM tasks")).all())
        left = conn.execute(select(task_shards.c.uniqc_task_id, task_shards.c.platform_task_id))
        assert left.all() == [(rows[0]["task_id"], "sub-job")]
    assert set(restored) == {r["task_id"] for r in rows}
    broken = [r["task_id"] for r in rows if r["metadata_json"] == "{broken"]
    assert len(broken) == 2500 // 6 and {restored[i] for i in broken} == {"{broken"}  # exactly
    engine.dispose()


def test_failed_revision_is_atomic_or_safely_repeatable(
    fresh_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0003")
    with monkeypatch.context() as patch:
        ref.fail_v4_midway(patch)
        with pytest.raises(RuntimeError, match="injected"):
            upgrade(engine)
    with engine.connect() as conn:
        assert database_version(conn) == 3
        left = set(inspect(conn).get_table_names())
    if engine.dialect.name in ("mysql", "mariadb"):
        # no transactional DDL: the tables made before the failure stay...
        assert {"task_shards", "archived_task_shards"} <= left
    else:
        assert not left & {"task_shards", "archived_task_shards"}
    upgrade(engine)  # ...and running it again completes the revision either way
    with engine.connect() as conn:
        assert database_version(conn) == CURRENT_SCHEMA_VERSION
        names = {i["name"] for i in inspect(conn).get_indexes("archived_task_shards")}
    assert "archived_task_shards_platform_idx" in names
    engine.dispose()


@pytest.mark.slow
def test_concurrent_deployers_run_the_chain_once(fresh_url: URL) -> None:
    plain = fresh_url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "alembic", "-x", f"url={plain}", "upgrade", "head"]
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    logs = "".join(out + err for out, err in outputs)
    assert logs.count("Running upgrade  -> 0001") == 1
    assert logs.count("Running upgrade 0004 -> 0005") == 1
    assert logs.count("Running upgrade 0005 -> 0006") == 1


def _ensure_mysql_packet_limit(store: TaskStore, at_least: int) -> int:
    with store.engine.connect() as conn:
        limit = int(conn.execute(text("SELECT @@global.max_allowed_packet")).scalar_one())
        if limit < at_least:
            conn.execute(text(f"SET GLOBAL max_allowed_packet = {at_least}"))
            limit = at_least
    store.engine.dispose()  # new connections see the new limit
    return limit


def test_16_mib_result_and_four_byte_text(store: TaskStore, backend: str) -> None:
    if backend == "mysql":
        _ensure_mysql_packet_limit(store, 64 * MiB)
    big = {"blob": "😀" * (4 * MiB + 10)}  # 16 MiB of UTF-8 and then some
    info = TaskInfo(task_id="uqt_big", backend="𝔘 backend 😀", result=big, metadata={"k": "😀"})
    store.save(info)
    got = store.get("uqt_big")
    assert got is not None and got.result == big and got.backend == "𝔘 backend 😀"


def test_payload_over_the_server_limit_is_a_clear_error(store: TaskStore, backend: str) -> None:
    if backend != "mysql":
        pytest.skip("only MySQL/MariaDB limit one statement's size (max_allowed_packet)")
    limit = _ensure_mysql_packet_limit(store, 64 * MiB)
    store.save(TaskInfo(task_id="uqt_small", backend="b"))
    too_big = TaskInfo(task_id="uqt_huge", backend="b", result={"x": "a" * (limit + MiB)})
    with pytest.raises(PayloadTooLargeError, match="max_allowed_packet"):
        store.save(too_big)
    assert store.get("uqt_huge") is None and store.count() == 1


BACKEND_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
KILL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}
DEFAULT_PORT = {"postgresql": 5432, "mysql": 3306}


def test_a_dropped_pooled_connection_is_retried(store: TaskStore, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("a SQLite store holds its own connection to a file; nothing can drop it")
    store.save(TaskInfo(task_id="uqt_before", backend="b"))
    with store.engine.connect() as conn:  # the pool's connection, checked back in after
        backend_id = conn.execute(text(BACKEND_ID[backend])).scalar_one()
    kill_and_wait(store, backend, int(backend_id))
    store.save(TaskInfo(task_id="uqt_after", backend="b"))  # its connection died in the pool
    assert store.get("uqt_after") is not None and store.count() == 2


#: A backend (by id) that still exists on the server.
ALIVE = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE id = {}",
}


def kill_and_wait(store: TaskStore, backend: str, backend_id: int) -> None:
    """Kill a server backend and wait until it is gone (its client then sees the close)."""
    killer = create_store_engine(store.url)
    try:
        with killer.connect() as conn:
            conn.execute(text(KILL[backend].format(backend_id)))
            conn.commit()
            for _ in range(100):
                if not conn.execute(text(ALIVE[backend].format(backend_id))).scalar_one():
                    break
                conn.rollback()
                time.sleep(0.05)
            else:
                raise AssertionError(f"backend {backend_id} survived its kill")
        time.sleep(0.05)  # the server's close reaches the client socket
    finally:
        killer.dispose()


def test_a_connection_dropped_at_commit_is_never_run_again(store: TaskStore, backend: str) -> None:
    """The COMMIT reached the server, the answer did not: the call says the outcome is
    unknown and does not run the transaction again (a modify would apply twice)."""
    if backend == "sqlite":
        pytest.skip("a SQLite store holds its own connection to a file; nothing can drop it")
    store.save(TaskInfo(task_id="uqt_counted", backend="b", metadata={"n": 0}))
    host, port = store.url.host or "127.0.0.1", store.url.port or DEFAULT_PORT[backend]
    with CommitDropper(host, port) as proxy:
        proxied = TaskStore(url=store.url.set(host="127.0.0.1", port=proxy.port))
        changes: list[int] = []

        def count(info: TaskInfo) -> None:
            changes.append(1)
            info.metadata["n"] += 1

        try:
            proxy.armed.set()
            with pytest.raises(DatabaseUnavailableError, match="may or may not have been written"):
                proxied.modify("uqt_counted", count)
            assert proxy.dropped.is_set() and changes == [1]
            assert proxy.delivered.wait(5)
            proxy.delivered.clear()
            proxy.armed.set()
            with pytest.raises(DatabaseUnavailableError, match="may or may not have been written"):
                proxied.archive_task("uqt_counted")
            assert proxy.delivered.wait(5)
        finally:
            proxied.close()
    assert store.get("uqt_counted") is None
    archived = store.get_archived("uqt_counted")
    assert archived is not None and archived.metadata["n"] == 1  # committed once, not twice


def test_single_statement_writes_give_pooled_connections_back_transactional(
    store: TaskStore,
) -> None:
    """On PostgreSQL a lone write runs in autocommit; the pool must not keep that mode."""
    store.save(TaskInfo(task_id="uqt_parent", backend="b"))
    with pytest.raises(MissingParentTaskError):  # a statement the server refuses
        store.save_shard(TaskShard("uqt_ghost", 0, "p-ghost", "b"))
    with store.engine.connect() as first, store.engine.connect() as second:
        for n, conn in enumerate((first, second)):  # whatever the pool holds
            undone = {"backend": "b", "status": "x", "submit_time": "t", "update_time": "t"}
            conn.execute(tasks.insert().values(task_id=f"uqt_undone_{n}", **undone))
            conn.rollback()
    assert store.count() == 1
