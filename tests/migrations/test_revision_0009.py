"""Revision 0009 (the servers' sharded, trigger-kept counters) up and down with data on
every engine; counts equal to a GROUP BY of the rows after random mixes of every write
call, and under concurrent writers on the servers (PgBouncer and Galera included); a
fill exact beside running writers; a dropped trigger noticed."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, inspect, text

from tests.conftest import scratch_url
from tests.migrations.test_revision_0007 import _Lines
from uniqc_store import StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.repository import transfer

STATUSES = ("success", "failed", "running", "pending", "cancelled")
BACKENDS = ("b0", "b1", "b2", "b 2", "b2 ")  # ids differing by trailing spaces stay apart
SERVERS = ("postgresql", "mysql")
COUNTED = ("tasks", "archived_tasks")
TRIGGERS = {f"{t}_count_{e}" for t in COUNTED for e in ("insert", "delete", "update")}
#: PostgreSQL's extra statement triggers (TRUNCATE fires no row trigger).
TRUNCATE_TRIGGERS = {f"{t}_count_truncate" for t in COUNTED}


def made_triggers(engine: Engine) -> set[str]:
    """The triggers 0009 (or 0007, on SQLite) makes on this engine."""
    return TRIGGERS | TRUNCATE_TRIGGERS if engine.dialect.name == "postgresql" else TRIGGERS


def grouped(engine: Engine) -> dict[tuple[int, str, str], int]:
    """Tasks per (archived, status, backend), counted from the rows themselves."""
    with engine.connect() as conn:
        return {
            (archived, str(s), str(b)): int(n)
            for archived, table in enumerate(COUNTED)
            for s, b, n in conn.execute(
                text(f"SELECT status, backend, count(*) FROM {table} GROUP BY status, backend")
            )
        }


def counted(engine: Engine) -> dict[tuple[int, str, str], int]:
    """The same, summed from ``task_counts`` (every shard)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT archived, status, backend, SUM(n) FROM task_counts"
                " GROUP BY archived, status, backend HAVING SUM(n) <> 0"
            )
        )
        return {(int(a), str(s), str(b)): int(n) for a, s, b, n in rows}


def tallied(store: TaskStore) -> dict[tuple[int, str, str], int]:
    """What the store's one count answers."""
    return {
        (int(archived), s, b): n
        for archived in (False, True)
        for (s, b), n in store.tally(archived=archived).groups.items()
    }


def server_objects(engine: Engine) -> tuple[bool, set[str]]:
    """Whether ``task_counts`` is there, and the trigger names on the task tables."""
    with engine.connect() as conn:
        has_table = inspect(conn).has_table("task_counts")
        if engine.dialect.name == "postgresql":
            sql = (
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN"
                " (to_regclass('tasks'), to_regclass('archived_tasks'))"
            )
        elif engine.dialect.name == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = (
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS"
                " WHERE TRIGGER_SCHEMA = DATABASE()"
            )
        return has_table, {str(n) for (n,) in conn.execute(text(sql))}


def raw_insert(engine: Engine, rows: list[tuple[str, str, str]]) -> None:
    with engine.begin() as conn:
        for task_id, backend, status in rows:
            conn.execute(
                text(
                    "INSERT INTO tasks (task_id, backend, status, shots, submit_time,"
                    " update_time, metadata_json) VALUES (:i, :b, :s, 1, 't', 't', '{}')"
                ),
                {"i": task_id, "b": backend, "s": status},
            )


def test_0009_up_and_down_with_data(fresh_url: URL) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0008")
    server = engine.dialect.name != "sqlite"
    raw_insert(engine, [(f"uqt_{i:03d}", BACKENDS[i % 5], STATUSES[i % 3]) for i in range(40)])
    with engine.begin() as conn:  # an archived row written before the counters
        conn.execute(
            text(
                "INSERT INTO archived_tasks (task_id, backend, status, shots, submit_time,"
                " update_time, metadata_json, archived_at) VALUES ('uqt_a', 'b0', 'success',"
                " 1, 't', 't', '{}', 't')"
            )
        )
    before = grouped(engine)

    upgrade(engine, "0009")
    with engine.connect() as conn:
        assert database_version(conn) == 9
        if not server:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 9
    assert server_objects(engine) == (True, made_triggers(engine))
    assert grouped(engine) == before == counted(engine)  # filled from the rows
    store = TaskStore(url=fresh_url, auto_migrate=True)
    assert store._counters
    assert tallied(store) == before
    store.save(TaskInfo(task_id="uqt_000", backend="b9", status="failed"))
    store.archive_task("uqt_001")
    store.close()
    after = grouped(engine)
    assert counted(engine) == after

    downgrade(engine, "0008")
    with engine.connect() as conn:
        assert database_version(conn) == 8
    if server:  # everything 0009 made is gone; the rows are as they were
        assert server_objects(engine) == (False, set())
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                functions = (
                    "SELECT count(*) FROM pg_proc WHERE proname = 'uniqc_store_count_task'"
                    " AND pronamespace = to_regnamespace(current_schema())"
                )
                assert conn.execute(text(functions)).scalar() == 0
    else:  # SQLite keeps 0007's counters
        assert server_objects(engine) == (True, TRIGGERS)
    assert grouped(engine) == after
    raw_insert(engine, [("uqt_at8", "b8", "failed")])  # written at 0008, by no trigger

    upgrade(engine)  # and up again: counted afresh
    assert counted(engine) == grouped(engine)
    assert grouped(engine)[(0, "failed", "b8")] == 1
    engine.dispose()


def _random_mix(store: TaskStore, rng: random.Random, ids: list[str]) -> None:
    """One random write call of the store (every write path, the staged bulk ones too)."""
    task_id = rng.choice(ids)
    info = TaskInfo(task_id=task_id, backend=rng.choice(BACKENDS), status=rng.choice(STATUSES))
    calls: list[Callable[[], object]] = [
        lambda: store.save(info),
        lambda: store.save_many(
            TaskInfo(task_id=rng.choice(ids), backend=rng.choice(BACKENDS), status=s)
            for s in rng.choices(STATUSES, k=rng.randrange(1, 30))
        ),
        lambda: store.modify(task_id, lambda t: setattr(t, "backend", rng.choice(BACKENDS))),
        lambda: store.delete(task_id),
        lambda: store.archive_task(task_id),
        lambda: store.restore_task(task_id),
        lambda: store.archive_many(rng.sample(ids, 5)),
        lambda: store.delete_many(rng.sample(ids, 5)),
        lambda: store.save_shard(TaskShard(task_id, 0, "p", "b0")),
        lambda: store.clear_completed(),
        lambda: store.archive_expired(hours=0, terminal_only=rng.random() < 0.5),
        lambda: store.purge_archived(older_than_hours=0) if rng.random() < 0.2 else None,
    ]
    with contextlib.suppress(StoreError, ValueError):  # e.g. a task already archived
        rng.choice(calls)()


def test_counts_equal_the_rows_after_random_mixes_of_every_write(fresh_url: URL) -> None:
    """Random sequences of every write call (and export/import, clear_completed, clear_all): after
    each burst the counters, the tally and a GROUP BY of the rows agree."""
    engine = create_store_engine(fresh_url, foreign_keys=False)
    store = TaskStore(url=fresh_url, auto_migrate=True)
    rng = random.Random(20261204)
    ids = [f"uqt_{i:03d}" for i in range(60)]
    store.save_many(  # over the staging threshold on the servers
        TaskInfo(task_id=f"uqt_bulk_{i}", backend=BACKENDS[i % 5], status=STATUSES[i % 5])
        for i in range(6000)
    )
    for burst in range(12):
        for _ in range(25):
            _random_mix(store, rng, ids)
        if burst == 5:
            lines: list[str] = []
            transfer.export_jsonl(store, _Lines(lines))
            store.clear_completed(["failed"])
            store.delete_many([f"uqt_bulk_{i}" for i in range(0, 6000, 2)])
            transfer.import_jsonl(store, lines)
        rows = grouped(engine)
        assert tallied(store) == rows, f"burst {burst}"
        assert counted(engine) == rows
        assert store.count(status="failed", backend="b2 ") == rows.get((0, "failed", "b2 "), 0)
    store.clear_all()
    assert tallied(store) == grouped(engine) == counted(engine) == {}
    store.close()
    engine.dispose()


@pytest.fixture(params=[*SERVERS, "pgbouncer", "galera"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with scratch_url(request.param, tmp_path, request) as url:
        yield url


def test_counts_stay_exact_under_concurrent_writers(server_url: URL) -> None:
    """Six threads, each its own store (so its own connections and shards), save, archive,
    restore and delete tasks of the same few groups at once; deadlocks between colliding
    shards are retried by the executor. Afterwards the counters equal the rows, and one
    group's count is spread over several shard rows (no one hot row)."""
    TaskStore(url=server_url, auto_migrate=True).close()
    engine = create_store_engine(server_url, foreign_keys=False)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        ids = [f"uqt_w{n}_{i}" for i in range(40)]
        try:
            with TaskStore(url=server_url) as store:
                for _ in range(120):
                    _random_mix(store, rng, ids)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = grouped(engine)
    assert rows and counted(engine) == rows
    with TaskStore(url=server_url) as store:
        assert tallied(store) == rows
    with engine.connect() as conn:
        shards = conn.execute(text("SELECT COUNT(DISTINCT shard) FROM task_counts")).scalar()
    assert shards is not None and shards > 1
    engine.dispose()


def test_the_fill_is_exact_while_writers_run(fresh_url: URL) -> None:
    """0009 runs while threads insert and delete tasks through plain SQL: the counters
    it fills equal the rows after (PostgreSQL: under its lock; MySQL/MariaDB: rows minus
    counters, read in one snapshot once the triggers are there)."""
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0008")
    raw_insert(engine, [(f"uqt_s{i}", BACKENDS[i % 5], STATUSES[i % 5]) for i in range(300)])
    stop = threading.Event()
    done: list[int] = []

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                raw_insert(engine, [(f"uqt_t{n}_{i}", BACKENDS[i % 5], STATUSES[i % 5])])
                with engine.begin() as conn:
                    conn.execute(
                        text("DELETE FROM tasks WHERE task_id = :i"), {"i": f"uqt_s{n * 100 + i}"}
                    )
            except Exception:  # a lock wait on SQLite: the next one goes on
                pass
            i += 1
        done.append(i)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        upgrade(engine)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert sum(done) > 0
    assert counted(engine) == grouped(engine)
    engine.dispose()


@pytest.mark.parametrize("backend", SERVERS)
def test_a_dropped_trigger_turns_the_counters_off(backend: str, tmp_path: Path) -> None:
    """Counters are trusted only with the table and all six triggers: drop one and a
    store opened after counts the rows (exactly) instead of trusting drifting counters."""
    with scratch_url(backend, tmp_path) as url:
        engine = create_store_engine(url, foreign_keys=False)
        with TaskStore(url=url, auto_migrate=True) as store:
            assert store._counters
        on = " ON archived_tasks" if backend == "postgresql" else ""
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER archived_tasks_count_update{on}"))
        with TaskStore(url=url) as store:
            assert not store._counters
            store.save(TaskInfo(task_id="uqt_x", backend="b", status="failed"))
            store.archive_task("uqt_x")
            assert store.tally(archived=True).groups == {("failed", "b"): 1}
        engine.dispose()


def test_mysql_fill_run_again_adds_nothing(tmp_path: Path) -> None:
    """MySQL/MariaDB commit each DDL: a 0009 stopped after the fill and run again (or the
    fill alone run again) leaves the counters exact: it adds rows minus counters, zero."""
    with scratch_url("mysql", tmp_path) as url:
        engine = create_store_engine(url, foreign_keys=False)
        upgrade(engine, "0008")
        raw_insert(engine, [(f"uqt_{i}", BACKENDS[i % 5], "failed") for i in range(30)])
        upgrade(engine, "0009")
        with engine.begin() as conn:  # as if the version stamp had not been written
            conn.execute(text("UPDATE uniqc_store_alembic_version SET version_num = '0008'"))
        upgrade(engine, "0009")
        assert counted(engine) == grouped(engine)
        assert server_objects(engine) == (True, made_triggers(engine))
        engine.dispose()


@pytest.mark.parametrize("backend", SERVERS)
def test_writers_on_one_shard_deadlock_with_an_error_the_executor_retries(
    backend: str, tmp_path: Path
) -> None:
    """Two transactions whose connections share a shard (17 connections: two must) and
    that count two groups in opposite orders deadlock on the counter rows: the server
    aborts one with 40P01 / 1213, which is in the family's retry codes, so the store's
    executor runs such a unit again (the concurrent-writers test sees it end well)."""
    from uniqc_store.db.dialects import family_of

    with scratch_url(backend, tmp_path) as url:
        TaskStore(url=url, auto_migrate=True).close()
        engine = create_store_engine(url, foreign_keys=False, pool_size=20)
        shard_of = "pg_backend_pid() % 16" if backend == "postgresql" else "CONNECTION_ID() % 16"
        conns, by_shard = [], {}
        for _ in range(17):
            conn = engine.connect()
            conns.append(conn)
            by_shard.setdefault(conn.execute(text(f"SELECT {shard_of}")).scalar(), []).append(conn)
            conn.rollback()
        first, second = next(pair for pair in by_shard.values() if len(pair) > 1)[:2]
        insert = text(
            "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
            " metadata_json) VALUES (:i, 'b', :s, 1, 't', 't', '{}')"
        )
        first.execute(insert, {"i": "uqt_1a", "s": "running"})
        second.execute(insert, {"i": "uqt_2a", "s": "failed"})
        failures: list[BaseException] = []

        def crossing(conn, task_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
            try:
                conn.execute(insert, {"i": task_id, "s": status})
            except Exception as exc:  # the deadlock, checked below
                failures.append(exc)
                conn.rollback()

        waiting = threading.Thread(target=crossing, args=(first, "uqt_1b", "failed"))
        waiting.start()
        waiting.join(1.0)  # now waiting on the second's new counter row
        crossing(second, "uqt_2b", "running")
        waiting.join()
        assert len(failures) == 1
        family = family_of(backend)
        assert family.code_of(getattr(failures[0], "orig", None)) in family.retry
        for conn in conns:
            conn.rollback()
            conn.close()
        engine.dispose()


def test_a_truncate_on_postgresql_empties_that_tables_counts(tmp_path: Path) -> None:
    """TRUNCATE fires no row trigger; 0009's statement trigger empties the counts of the
    truncated table (and only its): counts stay equal to the rows."""
    with scratch_url("postgresql", tmp_path) as url:
        engine = create_store_engine(url, foreign_keys=False)
        with TaskStore(url=url, auto_migrate=True) as store:
            store.save_many(
                TaskInfo(task_id=f"uqt_{i}", backend="b", status="failed") for i in range(9)
            )
            store.archive_task("uqt_1")
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE tasks CASCADE"))
            assert tallied(store) == grouped(engine) == {(1, "failed", "b"): 1}
            store.save(TaskInfo(task_id="uqt_new", backend="b", status="running"))
            assert tallied(store) == grouped(engine) == counted(engine)
        engine.dispose()
