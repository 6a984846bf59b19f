"""``TaskStore.metrics``: the figures counted in the db layer, on every engine and both
SQLite paths, without the API: calls, latency, errors by class, busy waits (SQLite's held
connection, an exhausted server pool), the pool, a retry after a real deadlock."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from tests.conftest import scratch_url
from tests.race_tools import unit_held_elsewhere
from uniqc_store import DatabaseBusyError, TaskConflictError, TaskInfo, TaskStore, Timeouts
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.metrics import LATENCY_BUCKETS, MetricsSnapshot, OperationFigures
from uniqc_store.schema.tables import archived_tasks


def _task(task_id: str) -> TaskInfo:
    return TaskInfo(task_id=task_id, backend="dummy", status="success", shots=5)


def _figures(snapshot: MetricsSnapshot, operation: str) -> OperationFigures:
    empty = OperationFigures(0, 0.0, (0,) * (len(LATENCY_BUCKETS) + 1), {})
    return snapshot.operations.get(operation, empty)


def test_every_call_is_counted_with_its_time_and_how_it_ended(store: TaskStore) -> None:
    before = store.metrics
    store.save(_task("uqt_m1"))
    assert store.get("uqt_m1") is not None
    assert store.get("uqt_none") is None
    with pytest.raises(TypeError):
        store.get(3)  # type: ignore[arg-type]
    assert store.archive_task("uqt_m1") is True
    store.save(_task("uqt_m1"))
    with pytest.raises(TaskConflictError):
        store.archive_task("uqt_m1")
    after = store.metrics

    get, get_before = _figures(after, "get"), _figures(before, "get")
    assert get.calls - get_before.calls == 3
    assert get.errors.get("TypeError", 0) - get_before.errors.get("TypeError", 0) == 1
    assert get.seconds > get_before.seconds
    archive = _figures(after, "archive_task")
    assert archive.calls - _figures(before, "archive_task").calls == 2
    assert archive.errors.get("TaskConflictError", 0) >= 1
    assert _figures(after, "save").calls - _figures(before, "save").calls == 2
    for figures in after.operations.values():  # buckets cumulative, the last one all calls
        assert list(figures.buckets) == sorted(figures.buckets)
        assert figures.buckets[-1] == figures.calls
        assert len(figures.buckets) == len(after.bucket_bounds) + 1
    assert after.as_dict()["operations"]["get"]["calls"] == get.calls


def test_a_walk_is_one_call_and_stopping_early_is_no_error(store: TaskStore) -> None:
    store.save_many([_task(f"uqt_w{i}") for i in range(5)])
    before_all = store.metrics
    before = _figures(before_all, "iter_tasks")
    assert len(list(store.iter_tasks(batch_size=2))) == 5
    walk = store.iter_tasks(batch_size=2)
    next(walk)
    assert isinstance(walk, Generator)
    walk.close()
    with pytest.raises(ValueError):
        next(store.iter_tasks(batch_size=0))
    after = _figures(store.metrics, "iter_tasks")
    assert after.calls - before.calls == 3
    assert after.errors.get("ValueError", 0) - before.errors.get("ValueError", 0) == 1
    assert sum(after.errors.values()) - sum(before.errors.values()) == 1
    walks, walks_before = _figures(store.metrics, "walk"), _figures(before_all, "walk")
    assert walks.calls - walks_before.calls == 2  # the full walk and the one stopped early
    assert walks.errors == walks_before.errors


def test_the_stores_of_one_engine_share_its_figures(store: TaskStore) -> None:
    other = TaskStore(engine=store.engine)
    try:
        before = _figures(store.metrics, "count").calls
        other.count()
        assert _figures(store.metrics, "count").calls == before + 1
        assert other.metrics.operations["count"] == store.metrics.operations["count"]
    finally:
        other.close()


def test_a_sqlite_caller_waiting_for_the_connection_is_a_busy_wait(tmp_path: Path) -> None:
    store = TaskStore(tmp_path, timeouts=Timeouts(lock_wait_seconds=0.3, call_seconds=5))
    try:
        assert store.metrics.busy_waits == 0 and store.metrics.pool is None
        with unit_held_elsewhere(store.reading), pytest.raises(DatabaseBusyError):
            store.get("uqt_x")
        snapshot = store.metrics
        assert snapshot.busy_waits == 1 and snapshot.busy_wait_seconds >= 0.25
        assert snapshot.operations["get"].errors == {"DatabaseBusyError": 1}
        store.get("uqt_x")  # the connection free: no wait
        assert store.metrics.busy_waits == 1
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_an_exhausted_pool_is_a_busy_wait_and_the_pool_is_shown(
    backend: str, tmp_path: Path
) -> None:
    with scratch_url(backend, tmp_path) as url:
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}
        store = TaskStore(url=url, auto_migrate=True, engine_options=options)
        try:
            idle = store.metrics.pool
            assert idle is not None and (idle.size, idle.checked_out) == (1, 0)
            assert (idle.overflow, idle.max_overflow) == (0, 0)
            with unit_held_elsewhere(store.reading):
                held = store.metrics.pool
                assert held is not None and held.checked_out == 1
                with pytest.raises(DatabaseBusyError, match="pool_size"):
                    store.get("uqt_x")
            snapshot = store.metrics
            assert snapshot.busy_waits == 1 and snapshot.busy_wait_seconds >= 0.25
            assert snapshot.operations["get"].errors == {"DatabaseBusyError": 1}
            assert snapshot.pool is not None and snapshot.pool.checked_out == 0
            store.get("uqt_x")
            assert store.metrics.busy_waits == 1
        finally:
            store.close()


@pytest.mark.postgresql  # reaches the shared PostgreSQL
def test_a_deadlock_the_executor_runs_again_is_a_conflict_retry(tmp_path: Path) -> None:
    """PostgreSQL, where the victim is certain: the backend whose deadlock check runs
    first (the one that waited first, the store's) is the one aborted."""
    with scratch_url("postgresql", tmp_path) as url:
        store = TaskStore(url=url, auto_migrate=True)
        other = create_store_engine(url)
        try:
            store.save(_task("uqt_dead"))
            outcome: list[object] = []
            with other.connect() as conn:
                conn.execute(
                    archived_tasks.insert().values(
                        task_id="uqt_dead",
                        backend="dummy",
                        status="success",
                        submit_time="t",
                        update_time="t",
                        archived_at="t",
                    )
                )  # uncommitted: the store's archive insert of this id waits on it
                mover = threading.Thread(target=lambda: outcome.append(_archive(store)))
                mover.start()
                _wait_for_a_lock_wait(conn)
                conn.execute(text("SELECT 1 FROM tasks WHERE task_id = 'uqt_dead' FOR UPDATE"))
                conn.rollback()  # the cycle is broken: the store's second attempt goes through
                mover.join(30)
            assert outcome == [True]
            assert store.metrics.retries["conflict"] == 1
            assert store.metrics.operations["archive_task"].errors == {}
        finally:
            other.dispose()
            store.close()


def _archive(store: TaskStore) -> object:
    try:
        return store.archive_task("uqt_dead")
    except Exception as exc:  # reported by the assertion on the outcome
        return exc


def _wait_for_a_lock_wait(conn: Connection) -> None:
    """Until another backend waits for this connection's transaction (pg_locks), at most 10 s."""
    deadline = time.monotonic() + 10
    query = text(
        "SELECT count(*) FROM pg_locks waiting JOIN pg_locks holding "
        "ON holding.transactionid = waiting.transactionid "
        "WHERE holding.pid = pg_backend_pid() AND holding.granted AND NOT waiting.granted"
    )
    while conn.execute(query).scalar_one() == 0:
        assert time.monotonic() < deadline, "the store's archive never waited for the lock"
        time.sleep(0.02)
