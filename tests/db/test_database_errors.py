"""No SQLAlchemy or driver exception leaves a public call: each becomes the store's own.

Busy past the timeout -> ``DatabaseBusyError``; read-only, full, corrupt,
unreachable or dropped -> ``DatabaseUnavailableError``; the original is always
the ``__cause__`` and nothing is written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, create_engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tests.conftest import scratch_url
from uniqc_store import (
    DatabaseUnavailableError,
    PayloadTooLargeError,
    StoreError,
    TaskInfo,
    TaskStore,
    Timeouts,
)
from uniqc_store.db.dialects import MYSQL


def _sqlite_url(path: Path, **query: str) -> URL:
    return URL.create("sqlite+pysqlite", database=str(path), query=query)


def test_read_only_file_is_unavailable_and_reads_still_work(tmp_path: Path) -> None:
    with TaskStore(tmp_path) as store:
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
    uri = f"file:{tmp_path / 'tasks.sqlite'}?mode=ro"
    engine = create_engine(_sqlite_url(Path(uri), uri="true"))
    with TaskStore(engine=engine) as store:
        assert store.get("uqt_1") is not None
        with pytest.raises(DatabaseUnavailableError, match=r"readonly|read-only") as caught:
            store.save(TaskInfo(task_id="uqt_2", backend="b"))
        assert isinstance(caught.value.__cause__, SQLAlchemyError)
        assert store.count() == 1
    engine.dispose()


def test_full_database_is_unavailable_and_nothing_is_written(tmp_path: Path) -> None:
    TaskStore(tmp_path).close()
    engine = create_engine(_sqlite_url(tmp_path / "tasks.sqlite"))

    @event.listens_for(engine, "connect")
    def _small(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute("PRAGMA max_page_count = 20")  # type: ignore[attr-defined]

    with TaskStore(engine=engine) as store:
        with pytest.raises(DatabaseUnavailableError, match="full"):
            store.save(TaskInfo(task_id="uqt_big", backend="b", result={"x": "a" * 200_000}))
        assert store.get("uqt_big") is None
        store.save(TaskInfo(task_id="uqt_small", backend="b"))
        assert store.count() == 1
    engine.dispose()


def test_corrupt_file_is_unavailable(tmp_path: Path) -> None:
    """A damaged page of ``tasks`` (its root, so every scan of the table reads it)."""
    with TaskStore(tmp_path) as store:
        store.save_many(TaskInfo(task_id=f"uqt_{i}", backend="b") for i in range(500))
    path = tmp_path / "tasks.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tasks'").fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    start = (root[0] - 1) * page_size
    data[start : start + page_size] = b"\xff" * page_size  # a page of garbage
    path.write_bytes(bytes(data))
    with TaskStore(tmp_path) as store:
        with pytest.raises(DatabaseUnavailableError, match="malformed") as caught:
            list(store.iter_tasks())
        assert isinstance(caught.value.__cause__, SQLAlchemyError)


def test_damaged_catalog_is_unavailable_not_foreign(tmp_path: Path) -> None:
    """A store file whose schema pages are damaged is refused on open as damaged
    (DatabaseUnavailableError, with the driver's error as the cause), not as foreign."""
    with TaskStore(tmp_path) as store:
        store.save_many(TaskInfo(task_id=f"uqt_{i}", backend="b") for i in range(500))
    path = tmp_path / "tasks.sqlite"
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # page 2: part of the catalog and version table
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        TaskStore(tmp_path)
    assert isinstance(caught.value, DatabaseUnavailableError)
    assert isinstance(caught.value.__cause__, (SQLAlchemyError, sqlite3.DatabaseError))


def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        TaskStore(url="postgresql+psycopg://alice:s3cret@127.0.0.1:1/tasks")
    assert "s3cret" not in str(caught.value)


def test_a_server_connection_killed_again_and_again(store: TaskStore, backend: str) -> None:
    """The store's server connections are killed while it works: each call retries
    once on a fresh connection, and a call that still fails raises the store's
    error, never the driver's."""
    if backend == "sqlite":
        pytest.skip("a SQLite store holds its own file; nothing can drop it")
    ours: list[int] = []  # the server's ids of the store's own connections, and only those
    own_id = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"

    @event.listens_for(store.engine, "connect")
    def _remember(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(own_id)
        ours.append(int(cursor.fetchone()[0]))
        cursor.close()

    store.engine.dispose()  # every later connection is a new, remembered one
    store.save(TaskInfo(task_id="uqt_1", backend="b"))
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    admin = create_engine(store.url, isolation_level="AUTOCOMMIT")
    stop = threading.Event()

    def killer() -> None:
        with admin.connect() as conn:
            while not stop.is_set():
                for server_id in list(ours):
                    with contextlib.suppress(SQLAlchemyError):  # already gone
                        conn.execute(text(kill), {"id": server_id})
                stop.wait(0.003)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    acknowledged: list[str] = []
    try:
        for i in range(150):
            try:
                store.save(TaskInfo(task_id=f"uqt_k{i}", backend="b"))
                acknowledged.append(f"uqt_k{i}")
                store.get("uqt_1")
            except DatabaseUnavailableError as exc:  # anything else fails the test
                assert isinstance(exc.__cause__, SQLAlchemyError)
    finally:
        stop.set()
        thread.join(10)
        admin.dispose()
    assert len(ours) > 1  # connections were killed and replaced
    assert store.get("uqt_1") is not None
    assert [i for i in acknowledged if store.get(i) is None] == []  # acknowledged is durable


@pytest.fixture
def mariadb_store(tmp_path: Path) -> Iterator[TaskStore]:
    """A migrated store on a scratch database of the shared MariaDB (a long call deadline:
    sending tens of MiB on a loaded machine takes a while)."""
    with scratch_url("mysql", tmp_path) as url:
        store = TaskStore(url=url, auto_migrate=True, timeouts=Timeouts(call_seconds=300))
        try:
            yield store
        finally:
            store.close()


def _kill_while_blocked(store: TaskStore, ours: list[int], done: threading.Event) -> None:
    """Kill every connection of the store that is running a statement, until ``done``."""
    killer = create_engine(store.url, isolation_level="AUTOCOMMIT")
    try:
        with killer.connect() as conn:
            while not done.is_set():
                running = conn.execute(
                    text("SELECT id FROM information_schema.processlist WHERE command = 'Query'")
                ).scalars()
                for server_id in set(running) & set(ours):
                    with contextlib.suppress(SQLAlchemyError):  # already gone
                        conn.execute(text(f"KILL {int(server_id)}"))
                done.wait(0.02)
    finally:
        killer.dispose()


@pytest.mark.mysql
def test_a_small_write_whose_connection_is_killed_is_a_lost_connection(
    mariadb_store: TaskStore,
) -> None:
    """A save of a few hundred bytes killed mid-statement (it waits on a row lock another
    connection holds; both attempts are killed) gets MySQL's hang-up (2013), which for a
    statement this small is a lost connection, not a payload over max_allowed_packet."""
    store, ours = mariadb_store, []

    @event.listens_for(store.engine, "connect")
    def _remember(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT CONNECTION_ID()")
        ours.append(int(cursor.fetchone()[0]))
        cursor.close()

    store.engine.dispose()
    store.save(TaskInfo(task_id="uqt_1", backend="b"))
    holder = create_engine(store.url)
    done = threading.Event()
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT * FROM tasks WHERE task_id = 'uqt_1' FOR UPDATE")).all()
            thread = threading.Thread(target=_kill_while_blocked, args=(store, ours, done))
            thread.start()
            try:
                with pytest.raises(StoreError) as caught:
                    store.save(TaskInfo(task_id="uqt_1", backend="changed", metadata={"k": "v"}))
            finally:
                done.set()
                thread.join(10)
            conn.rollback()
    finally:
        holder.dispose()
    cause = caught.value.__cause__
    assert isinstance(cause, DBAPIError) and cause.orig is not None
    assert cause.orig.args[0] in MYSQL.hung_up and cause.statement.lstrip().startswith("INSERT")
    assert type(caught.value) is DatabaseUnavailableError, caught.value
    assert "max_allowed_packet" not in str(caught.value)
    got = store.get("uqt_1")
    assert got is not None and got.backend == "b"  # nothing was written


@pytest.mark.mysql
def test_a_write_far_over_max_allowed_packet_is_too_large_when_the_server_hangs_up(
    mariadb_store: TaskStore,
) -> None:
    """A statement 2.5 times the server's limit: the server cuts the connection while it
    is still being sent (2006), which for a statement that large is PayloadTooLargeError."""
    store = mariadb_store
    with store.engine.connect() as conn:  # read only: the shared server is never reconfigured
        limit = int(conn.execute(text("SELECT @@max_allowed_packet")).scalar_one())
    too_big = TaskInfo(task_id="uqt_huge", backend="b", result={"x": "a" * (limit * 5 // 2)})
    with pytest.raises(PayloadTooLargeError, match="max_allowed_packet") as caught:
        store.save(too_big)
    cause = caught.value.__cause__
    assert isinstance(cause, DBAPIError) and cause.orig is not None
    assert cause.orig.args[0] in MYSQL.too_large | MYSQL.hung_up
    assert store.get("uqt_huge") is None and store.count() == 0
