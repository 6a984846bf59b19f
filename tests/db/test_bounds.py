"""Every wait is bounded: connect, lock waits, calls against a hung server, the pool.

The hung server is real: a private PostgreSQL or MariaDB (``private_servers``)
frozen with SIGSTOP, which keeps its sockets open and answers nothing, so only
the client's deadline (``watchdog.py``) can end a call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.conftest import scratch_url
from tests.http_server import http_client
from tests.private_servers import PrivateServer, private_mariadb, private_postgresql
from tests.race_tools import unit_held_elsewhere
from uniqc_store import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    TaskInfo,
    TaskShard,
    TaskStore,
    Timeouts,
)
from uniqc_store.db.drivers import SERVER_POOL_DEFAULTS
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.sqlite import SQLITE_BEGIN

SHORT = Timeouts(connect_seconds=2, lock_wait_seconds=1, call_seconds=3, bulk_seconds=5)
#: What a bound may overrun by on this 2-core machine (scheduling, the cancel thread).
SLACK_S = 2.5


def _task(task_id: str = "uqt_bounded") -> TaskInfo:
    return TaskInfo(task_id=task_id, backend="dummy", status="running", shots=10)


# -- the settings ----------------------------------------------------------------


def test_timeouts_refuse_what_cannot_be_a_bound() -> None:
    with pytest.raises(ValueError, match="call_seconds must be longer than lock_wait"):
        Timeouts(lock_wait_seconds=10, call_seconds=5)
    with pytest.raises(ValueError, match="above 0"):
        Timeouts(connect_seconds=0)
    with pytest.raises(TypeError, match="number of seconds"):
        Timeouts(call_seconds="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown timeout"):
        Timeouts.from_mapping({"call": 5})
    with pytest.raises(TypeError, match="Timeouts"):
        TaskStore(url="sqlite://", timeouts={"call_seconds": 5})  # type: ignore[arg-type]


def test_stores_of_one_engine_share_its_timeouts(tmp_path: Path) -> None:
    first = TaskStore(tmp_path, timeouts=SHORT)
    try:
        TaskStore(engine=first.engine).close()  # no timeouts asked: the engine's
        with pytest.raises(ValueError, match="share its timeouts"):
            TaskStore(engine=first.engine, timeouts=Timeouts())
    finally:
        first.close()


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_engine_options_reach_create_engine(backend: str, tmp_path: Path) -> None:
    with scratch_url(backend, tmp_path) as url:
        default = TaskStore(url=url, auto_migrate=True)
        try:
            pool = default.engine.pool
            assert pool.size() == SERVER_POOL_DEFAULTS["pool_size"]  # type: ignore[attr-defined]
            assert pool._max_overflow == SERVER_POOL_DEFAULTS["max_overflow"]  # type: ignore[attr-defined]
            assert pool._timeout == SERVER_POOL_DEFAULTS["pool_timeout"]  # type: ignore[attr-defined]
        finally:
            default.close()
        name = "uniqc-bounds" if backend == "postgresql" else None
        connect_args = {"application_name": name} if name else {"program_name": "x"}
        tuned = TaskStore(
            url=url,
            engine_options={"pool_size": 3, "max_overflow": 1, "connect_args": connect_args},
        )
        try:
            assert tuned.engine.pool.size() == 3  # type: ignore[attr-defined]
            with tuned.reading() as conn:
                if backend == "postgresql":
                    assert conn.execute(text("SHOW application_name")).scalar() == name
                    # our connect bound is merged with the caller's connect_args
                    dsn = conn.connection.dbapi_connection.info.dsn  # type: ignore[union-attr]
                    assert f"connect_timeout={Timeouts().connect_whole_seconds}" in dsn
                    assert f"application_name={name}" in dsn
                else:
                    wait = conn.execute(text("SELECT @@SESSION.innodb_lock_wait_timeout")).scalar()
                    assert wait == Timeouts().lock_wait_whole_seconds
        finally:
            tuned.close()


def test_engine_options_are_refused_when_not_a_dict() -> None:
    with pytest.raises(TypeError, match="engine_options"):
        TaskStore(url="sqlite://", engine_options=[("pool_size", 3)])  # type: ignore[arg-type]


def test_the_cli_reads_bounds_from_the_environment(tmp_path: Path) -> None:
    TaskStore(tmp_path).close()
    url = f"sqlite:///{tmp_path}/tasks.sqlite"
    env = {**os.environ, "UNIQC_STORE_TIMEOUTS": '{"call": 3}'}
    bad = subprocess.run(
        [sys.executable, "-m", "uniqc_store", "list", "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2, bad.stderr
    assert "unknown timeout" in bad.stderr
    env = {**os.environ, "UNIQC_STORE_TIMEOUTS": '{"lock_wait_seconds": 2, "call_seconds": 4}'}
    good = subprocess.run(
        [sys.executable, "-m", "uniqc_store", "list", "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    env = {**os.environ, "UNIQC_STORE_ENGINE_OPTIONS": "[1]"}
    wrong = subprocess.run(
        [sys.executable, "-m", "uniqc_store", "list", "--url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "JSON object" in wrong.stderr


# -- lock waits --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def short_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    with scratch_url(request.param, tmp_path) as url:
        TaskStore(url=url, auto_migrate=True).close()
        store = TaskStore(url=url, timeouts=SHORT)
        try:
            yield store
        finally:
            store.close()


def _hold_row_lock(url: URL, task_id: str, release: threading.Event, held: threading.Event) -> None:
    """Another client holding the task row's lock (SQLite: the write lock) until told."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            if url.get_backend_name() == "sqlite":  # the recipe's begin hook takes the lock
                conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).execute(text("SELECT 1"))
            else:
                conn.execute(
                    text("SELECT task_id FROM tasks WHERE task_id = :k FOR UPDATE"), {"k": task_id}
                )
            held.set()
            release.wait(30)
            conn.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("call", ["delete", "save", "modify"])
def test_a_lock_wait_ends_as_busy_after_the_bound(short_store: TaskStore, call: str) -> None:
    short_store.save(_task())
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=_hold_row_lock, args=(short_store.url, "uqt_bounded", release, held)
    )
    holder.start()
    try:
        assert held.wait(15)
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError, match="lock"):
            if call == "delete":
                short_store.delete("uqt_bounded")
            elif call == "save":
                short_store.save(_task())
            else:
                short_store.modify("uqt_bounded", lambda info: setattr(info, "shots", 99))
        elapsed = time.monotonic() - started
        assert SHORT.lock_wait_seconds * 0.8 <= elapsed <= SHORT.lock_wait_seconds + SLACK_S
    finally:
        release.set()
        holder.join(30)
    found = short_store.get("uqt_bounded")  # nothing was written, and the store still works
    assert found is not None and found.shots == 10
    assert short_store.delete("uqt_bounded") is True


def test_a_sqlite_caller_waits_for_another_unit_at_most_the_bound(tmp_path: Path) -> None:
    store = TaskStore(tmp_path, timeouts=SHORT)
    try:
        with unit_held_elsewhere(store.reading):
            started = time.monotonic()
            with pytest.raises(DatabaseBusyError, match="lock_wait_seconds"):
                store.get("uqt_x")
            assert time.monotonic() - started <= SHORT.lock_wait_seconds + SLACK_S
        assert store.get("uqt_x") is None
    finally:
        store.close()


# -- the pool ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_an_exhausted_pool_is_busy_naming_the_setting(backend: str, tmp_path: Path) -> None:
    with scratch_url(backend, tmp_path) as url:
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5}
        store = TaskStore(url=url, auto_migrate=True, engine_options=options)
        try:
            with (
                unit_held_elsewhere(store.reading),
                pytest.raises(DatabaseBusyError, match="pool_size"),
            ):
                store.get("uqt_x")
            assert store.get("uqt_x") is None
        finally:
            store.close()


# -- a server that stopped answering ----------------------------------------------


@pytest.fixture(params=["postgresql", "mysql"])
def frozen_server(request: pytest.FixtureRequest) -> Iterator[PrivateServer]:
    starter = private_postgresql if request.param == "postgresql" else private_mariadb
    with starter() as server:
        yield server


def test_calls_against_a_stopped_server_end_within_their_bound(
    frozen_server: PrivateServer,
) -> None:
    url = frozen_server.url
    TaskStore(url=url, auto_migrate=True).close()
    store = TaskStore(url=url, timeouts=SHORT)
    app_store = TaskStore(url=url, timeouts=SHORT)
    try:
        store.save(_task())
        store.save_shard(
            TaskShard(
                uniqc_task_id="uqt_bounded", shard_index=0, platform_task_id="p-1", backend="dummy"
            )
        )
        frozen_server.stop()
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="did not answer"):
                store.get("uqt_bounded")
            assert time.monotonic() - started <= SHORT.call_seconds + SLACK_S

            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError):
                store.save(_task("uqt_unsure"))
            assert time.monotonic() - started <= SHORT.call_seconds + SLACK_S

            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError):
                TaskStore(url=url, timeouts=SHORT)
            assert time.monotonic() - started <= SHORT.call_seconds + SLACK_S

            from uniqc_store.api.app import create_app

            with http_client(create_app(app_store)) as client:
                started = time.monotonic()
                answer = client.get("/api/health")
                assert time.monotonic() - started <= SHORT.call_seconds + SLACK_S
                assert answer.status_code == 503
        finally:
            frozen_server.resume()
        # once the server answers again, so does the store, with what it acknowledged
        deadline = time.monotonic() + 30
        while True:
            try:
                found = store.get("uqt_bounded")
                break
            except DatabaseUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        assert found is not None and found.shots == 10
        assert len(store.get_shards("uqt_bounded")) == 1
    finally:
        store.close()
        app_store.close()


def test_a_stopped_server_bounds_the_connect(frozen_server: PrivateServer) -> None:
    TaskStore(url=frozen_server.url, auto_migrate=True).close()
    frozen_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError):
            TaskStore(url=frozen_server.url, timeouts=SHORT)
        assert time.monotonic() - started <= SHORT.connect_whole_seconds + SLACK_S
    finally:
        frozen_server.resume()
