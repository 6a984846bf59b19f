"""No SQLAlchemy or driver exception leaves a public call: each becomes the store's own.

Busy past the timeout -> ``DatabaseBusyError``; read-only, full, corrupt,
unreachable or dropped -> ``DatabaseUnavailableError``; the original is always
the ``__cause__`` and nothing is written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from uniqc_store import (
    DatabaseUnavailableError,
    StoreError,
    TaskInfo,
    TaskStore,
)


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
