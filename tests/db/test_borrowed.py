"""``store.using(connection)``: store calls inside the application's own transaction
(issue 26 part 5), on every engine: the application's rows and the store's commit or
roll back together; a store call that raised leaves the transaction as it was; a
deadlock is "retry your whole transaction"; connections the store cannot join are
refused; calls that own transactions are refused inside the block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.orm import Session

from tests.app_transactions import Undo, app_transaction
from tests.conftest import scratch_url
from uniqc_store import (
    DatabaseBusyError,
    MissingParentTaskError,
    StoreError,
    TaskConflictError,
    TaskInfo,
    TaskShard,
    TaskStore,
)

JOBS = "uqt_app_jobs"


@pytest.fixture
def jobs(store: TaskStore) -> Iterator[str]:
    """The application's own table, beside the store's, in the store's database."""
    with store.transaction() as conn:
        conn.execute(text(f"CREATE TABLE {JOBS} (id VARCHAR(40) PRIMARY KEY)"))
    try:
        yield JOBS
    finally:
        with store.transaction() as conn:
            conn.execute(text(f"DROP TABLE {JOBS}"))


def job_ids(store: TaskStore) -> set[str]:
    with store.reading() as conn:
        return {row[0] for row in conn.execute(text(f"SELECT id FROM {JOBS}"))}


def enter(store: TaskStore, conn: Connection) -> None:
    """Enter and leave a ``using`` block (for the refusals, raised on entering)."""
    with store.using(conn):
        pass


def add_job(conn: Connection, job_id: str) -> None:
    conn.execute(text(f"INSERT INTO {JOBS} (id) VALUES (:id)"), {"id": job_id})


def test_a_rollback_undoes_the_applications_rows_and_the_stores(
    store: TaskStore, jobs: str
) -> None:
    store.save(TaskInfo("uqt_kept", "b", status="running"))
    with pytest.raises(Undo), app_transaction(store) as conn, store.using(conn) as tx:
        add_job(conn, "job-1")
        tx.save(TaskInfo("uqt_new", "b"))
        tx.save_shard(TaskShard("uqt_new", 0, "p-uqt_new-0", "b"))
        tx.modify("uqt_kept", lambda info: setattr(info, "status", "success"))
        tx.delete("uqt_kept")
        # inside, the store sees the transaction's own rows
        assert tx.get("uqt_new") is not None and tx.get("uqt_kept") is None
        assert [s.shard_index for s in tx.get_shards("uqt_new")] == [0]
        raise Undo
    assert job_ids(store) == set()
    assert store.get("uqt_new") is None and store.get_shards("uqt_new") == []
    kept = store.get("uqt_kept")
    assert kept is not None and kept.status == "running"


def test_a_commit_keeps_both(store: TaskStore, jobs: str) -> None:
    with app_transaction(store) as conn, store.using(conn) as tx:
        add_job(conn, "job-1")
        tx.save(TaskInfo("uqt_new", "b", status="success"))
        tx.save_shards(
            [
                TaskShard("uqt_new", 0, "p-uqt_new-0", "b"),
                TaskShard("uqt_new", 1, "p-uqt_new-1", "b"),
            ]
        )
    assert job_ids(store) == {"job-1"}
    found = store.get("uqt_new")
    assert found is not None and found.status == "success"
    assert len(store.get_shards("uqt_new")) == 2


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
def test_archive_task_is_atomic_with_the_applications_work(
    store: TaskStore, jobs: str, commit: bool
) -> None:
    store.save(TaskInfo("uqt_done", "b", status="success"))
    store.save_shard(TaskShard("uqt_done", 0, "p-uqt_done-0", "b"))
    with (
        pytest.raises(Undo) if not commit else _nothing(),
        app_transaction(store) as conn,
        store.using(conn) as tx,
    ):
        add_job(conn, "job-done")
        assert tx.archive_task("uqt_done") is True
        assert tx.get("uqt_done") is None and tx.get_archived("uqt_done") is not None
        if not commit:
            raise Undo
    if commit:
        assert job_ids(store) == {"job-done"}
        assert store.get("uqt_done") is None
        assert len(store.get_archived_shards("uqt_done")) == 1
    else:
        assert job_ids(store) == set()
        assert store.get_archived("uqt_done") is None
        assert len(store.get_shards("uqt_done")) == 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_a_store_call_that_raised_leaves_the_transaction_as_it_was(
    store: TaskStore, jobs: str
) -> None:
    """Each store write runs in a SAVEPOINT: after a failed call the application's
    transaction goes on (PostgreSQL would otherwise have aborted it) and holds no part
    of the failed call (SQLite would otherwise keep the first shard of the two)."""
    store.save(TaskInfo("uqt_twice", "b"))
    store.archive_task("uqt_twice")
    store.save(TaskInfo("uqt_twice", "b"))
    with app_transaction(store) as conn, store.using(conn) as tx:
        add_job(conn, "job-1")
        tx.save(TaskInfo("uqt_parent", "b"))
        with pytest.raises(MissingParentTaskError):
            tx.save_shards(
                [
                    TaskShard("uqt_parent", 0, "p-uqt_parent-0", "b"),
                    TaskShard("uqt_orphan", 0, "p-uqt_orphan-0", "b"),
                ]
            )
        with pytest.raises(TaskConflictError):
            tx.archive_task("uqt_twice")
        add_job(conn, "job-2")
        tx.save_shard(TaskShard("uqt_parent", 1, "p-uqt_parent-1", "b"))
    assert job_ids(store) == {"job-1", "job-2"}
    assert [s.shard_index for s in store.get_shards("uqt_parent")] == [1]
    assert store.get("uqt_twice") is not None


def test_an_orm_sessions_connection(store: TaskStore, jobs: str) -> None:
    """``store.using(session.connection())``: the Session's commit decides."""

    @contextmanager
    def session() -> Iterator[Session]:
        if store.dialect != "sqlite":
            with Session(store.engine) as orm:
                yield orm
            return
        with (
            store.transaction() as conn,
            Session(bind=conn, join_transaction_mode="create_savepoint") as orm,
        ):
            yield orm

    with session() as orm:
        orm.execute(text(f"INSERT INTO {JOBS} (id) VALUES ('job-rolled-back')"))
        with store.using(orm.connection()) as tx:
            tx.save(TaskInfo("uqt_rolled_back", "b"))
        orm.rollback()
    with session() as orm:
        orm.execute(text(f"INSERT INTO {JOBS} (id) VALUES ('job-committed')"))
        with store.using(orm.connection()) as tx:
            tx.save(TaskInfo("uqt_committed", "b"))
        orm.commit()
    assert job_ids(store) == {"job-committed"}
    assert store.get("uqt_committed") is not None and store.get("uqt_rolled_back") is None


def test_calls_that_own_transactions_are_refused_inside(store: TaskStore, jobs: str) -> None:
    store.save(TaskInfo("uqt_1", "b"))
    with app_transaction(store) as conn, store.using(conn) as tx:
        tx.save(TaskInfo("uqt_2", "b"))
        with pytest.raises(StoreError, match="call the store the block yields"):
            store.get("uqt_1")
        with pytest.raises(StoreError, match="call the store the block yields"):
            store.save(TaskInfo("uqt_3", "b"))
        with pytest.raises(StoreError, match="inside a using"):
            enter(tx, conn)
        for call, refused in (
            ("upgrade()", tx.upgrade),
            ("session()", tx.session),
            ("archive_expired()", tx.archive_expired),
            ("purge_archived()", lambda: tx.purge_archived(older_than_hours=1)),
            ("archive_many()", lambda: tx.archive_many(["uqt_1"])),
            ("delete_many()", lambda: tx.delete_many(["uqt_1"])),
        ):
            with pytest.raises(StoreError) as raised:
                refused()
            assert str(raised.value).startswith(f"{call} runs transactions of its own")
        with pytest.raises(StoreError, match="closed with its block"):
            tx.close()
        for block in (tx.reading, tx.transaction):
            with pytest.raises(StoreError, match="runs transactions of its own"), block():
                pass
        # reads see the transaction's rows, iterators and counts included
        assert {info.task_id for info in tx.iter_tasks(batch_size=1)} == {"uqt_1", "uqt_2"}
        assert tx.count() == 2 and len(tx.list(limit=5)) == 2
        assert len(tx.list_page(limit=5).tasks) == 2
        kept_past_the_block = tx.iter_tasks(batch_size=1)
    with pytest.raises(StoreError, match="has ended"):
        next(kept_past_the_block)
    with pytest.raises(StoreError, match="has ended"):
        tx.get("uqt_1")
    assert store.count() == 2  # the store itself works again after the block


def test_only_a_connection_is_taken(store: TaskStore) -> None:
    with Session(store.engine) as orm, pytest.raises(TypeError, match=r"session\.connection\(\)"):
        enter(store, orm)  # type: ignore[arg-type]
    with store.engine.connect() as conn:
        conn.close()
        with pytest.raises(ValueError, match="closed"):
            enter(store, conn)


def test_a_connection_to_another_database_is_refused(
    store: TaskStore, backend: str, tmp_path: Path
) -> None:
    """Another family, another file, another server database or schema: refused; the same
    server database through another engine: taken (the server says where it is)."""
    other = create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    try:
        with other.connect() as conn, pytest.raises(ValueError, match=r"another|sqlite"):
            enter(store, conn)
    finally:
        other.dispose()
    if backend == "sqlite":
        return
    with scratch_url(backend, tmp_path) as url:
        elsewhere, same = create_engine(url), create_engine(store.url)
        try:
            with elsewhere.connect() as conn, pytest.raises(ValueError, match="another database"):
                enter(store, conn)
            with same.begin() as conn, store.using(conn) as tx:
                tx.save(TaskInfo("uqt_through_another_engine", "b"))
            assert store.get("uqt_through_another_engine") is not None
        finally:
            elsewhere.dispose()
            same.dispose()


def test_sqlite_refuses_a_connection_without_the_recipe(tmp_path: Path) -> None:
    """A foreign engine's connection (pysqlite's own transactions) and one of the store's
    engine beginning DEFERRED are refused with the fix; the store's transaction() and
    an IMMEDIATE connection of its engine are taken."""
    with TaskStore(tmp_path) as store:
        foreign = create_engine(f"sqlite:///{store.db_path}")
        try:
            for engine in (foreign, store.engine):
                with engine.begin() as conn, pytest.raises(ValueError) as refused:
                    enter(store, conn)
                assert "store.transaction()" in str(refused.value)
                assert "\n" not in str(refused.value)
        finally:
            foreign.dispose()
        immediate = store.engine.execution_options(uniqc_sqlite_begin="IMMEDIATE")
        with immediate.begin() as conn, store.using(conn) as tx:
            tx.save(TaskInfo("uqt_immediate", "b"))
        with store.transaction() as conn, store.using(conn) as tx:
            tx.save(TaskInfo("uqt_in_transaction", "b"))
        assert store.count() == 2
    with TaskStore(url="sqlite://") as memory:
        with memory.engine.connect() as conn, pytest.raises(ValueError, match="in memory"):
            enter(memory, conn)
        with memory.transaction() as conn, memory.using(conn) as tx:
            tx.save(TaskInfo("uqt_memory", "b"))
        assert memory.get("uqt_memory") is not None


# -- a deadlock inside the application's transaction ------------------------------------


def _waits_for_a_lock(watcher: Connection, backend: str, session_id: int) -> bool:
    if backend == "postgresql":
        query = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :id"
    else:
        query = (
            "SELECT trx_state = 'LOCK WAIT' FROM information_schema.innodb_trx "
            "WHERE trx_mysql_thread_id = :id"
        )
    for _ in range(300):  # 30 s at most
        if watcher.execute(text(query), {"id": session_id}).scalar():
            return True
        threading.Event().wait(0.1)
    return False


def test_a_deadlock_is_retry_your_whole_transaction(store: TaskStore, backend: str) -> None:
    """The store call inside ``using`` is made the deadlock's victim (on PostgreSQL it
    waits first, so its deadlock check runs first; on InnoDB the other transaction has
    changed many more rows): ``DatabaseBusyError`` saying to retry the whole
    transaction, not retried, and every later call of the block refused."""
    if backend == "sqlite":
        pytest.skip("SQLite has no deadlocks: the transaction holds the write lock")
    heavy = [f"uqt_heavy_{i:03}" for i in range(100)]
    store.save_many([TaskInfo(task_id, "b") for task_id in [*heavy, "uqt_a", "uqt_b"]])
    other = create_engine(store.url)
    locked, done = threading.Event(), threading.Event()
    session_id: list[int] = []

    def other_transaction() -> None:
        with other.connect() as watcher, other.begin() as conn:
            for task_id in heavy:  # one key at a time: only those rows are locked
                conn.execute(
                    text("UPDATE tasks SET status = 'running' WHERE task_id = :id"), {"id": task_id}
                )
            conn.execute(text("SELECT * FROM tasks WHERE task_id = 'uqt_b' FOR UPDATE"))
            locked.set()
            if _waits_for_a_lock(watcher, backend, session_id[0]):
                conn.execute(text("SELECT * FROM tasks WHERE task_id = 'uqt_a' FOR UPDATE"))
            done.wait(60)

    holder = threading.Thread(target=other_transaction)
    ask_id = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    try:
        with store.engine.connect() as conn:
            session_id.append(int(conn.execute(text(ask_id)).scalar_one()))
            holder.start()
            assert locked.wait(30)
            with store.using(conn) as tx:
                tx.modify("uqt_a", lambda info: setattr(info, "status", "success"))
                with pytest.raises(DatabaseBusyError, match="retry your whole transaction"):
                    tx.modify("uqt_b", lambda info: setattr(info, "status", "success"))
                with pytest.raises(DatabaseBusyError, match="roll your transaction back"):
                    tx.get("uqt_a")
            conn.rollback()
    finally:
        done.set()
        if holder.is_alive() or locked.is_set():
            holder.join(60)
        other.dispose()
    assert {store.get(i).status for i in ("uqt_a", "uqt_b")} == {"pending"}  # type: ignore[union-attr]
    assert store.get(heavy[0]).status == "running"  # type: ignore[union-attr]


def test_a_serialization_failure_is_retry_your_whole_transaction(
    store: TaskStore, backend: str
) -> None:
    """PostgreSQL at REPEATABLE READ: the application's snapshot is older than a row the
    store then locks (another store committed it meanwhile): 40001, not retried."""
    if backend != "postgresql":
        pytest.skip("a serialization failure at REPEATABLE READ: PostgreSQL")
    store.save(TaskInfo("uqt_a", "b"))
    elsewhere = TaskStore(url=store.url)  # another engine: its calls are not the block's
    try:
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with store.using(conn) as tx:
                assert tx.get("uqt_a") is not None  # the snapshot is taken here
                elsewhere.save(TaskInfo("uqt_a", "b", status="running"))
                with pytest.raises(DatabaseBusyError, match="retry your whole transaction"):
                    tx.modify("uqt_a", lambda info: setattr(info, "status", "success"))
            conn.rollback()
    finally:
        elsewhere.close()
    assert store.get("uqt_a").status == "running"  # type: ignore[union-attr]
