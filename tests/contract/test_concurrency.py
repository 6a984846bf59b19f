"""Many writers at once: threads sharing a store, processes each with their own."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import URL

from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.records import CURRENT_SCHEMA_VERSION

SHARED = "uqt_shared"


def writer(url: str, worker: int, count: int) -> int:
    """Upsert ``count`` own tasks plus the shared task and its shards; return writes."""
    store = TaskStore(url=url, auto_migrate=True)
    try:
        for i in range(count):
            store.save(TaskInfo(task_id=f"uqt_w{worker}_{i:04d}", backend=f"b{worker % 2}"))
            store.save(TaskInfo(task_id=SHARED, backend="shared", shots=worker))
            if i % 10 == 0:
                store.save_shards(
                    [
                        TaskShard(SHARED, (worker + j) % 4, f"p{worker}-{i}-{j}", "x")
                        for j in range(2)
                    ]
                )
        return count
    finally:
        store.close()


def reader(url: str, rounds: int) -> int:
    """Read while the writers write; return how many reads succeeded."""
    store = TaskStore(url=url, auto_migrate=True)
    try:
        for _ in range(rounds):
            store.count()
            store.list(limit=10)
            store.get(SHARED)
        return rounds
    finally:
        store.close()


def run_processes(url: str, writers: int, count: int, readers: int) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=writers + readers, mp_context=context) as pool:
        futures = [pool.submit(writer, url, w, count) for w in range(writers)]
        futures += [pool.submit(reader, url, 200) for _ in range(readers)]
        results = [f.result(timeout=600) for f in futures]
    assert results == [count] * writers + [200] * readers


@pytest.mark.slow
def test_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    url = str(URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite")))
    run_processes(url, writers=4, count=500, readers=2)
    with TaskStore(url=url) as store:
        assert store.count() == 4 * 500 + 1
        assert store.count(backend="b0") == store.count(backend="b1") == 1000
        assert len(store.get_shards(SHARED)) == 4


def open_at(url: str, start: float) -> str:
    """Wait for ``start``, then open (and so create and upgrade) the store."""
    while time.time() < start:
        pass
    TaskStore(url=url, auto_migrate=True).close()
    return "opened"


@pytest.mark.slow
def test_processes_create_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """Switching a new file to WAL bypasses the busy handler; openers must wait, not fail."""
    openers, rounds = 6, 15
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=openers, mp_context=context) as pool:
        list(pool.map(str, range(openers)))  # workers up before the first round
        for n in range(rounds):
            url = str(URL.create("sqlite+pysqlite", database=str(tmp_path / f"{n}.sqlite")))
            start = time.time() + 0.2
            results = list(pool.map(open_at, [url] * openers, [start] * openers, timeout=120))
            assert results == ["opened"] * openers
            with TaskStore(url=url) as store:
                assert store.schema_version() == CURRENT_SCHEMA_VERSION


@pytest.mark.slow
def test_processes_on_a_server(store: TaskStore, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("the SQLite case is test_processes_on_one_sqlite_file")
    url = store.url.render_as_string(hide_password=False)
    run_processes(url, writers=8, count=500, readers=1)
    assert store.count() == 8 * 500 + 1
    assert store.count(backend="b0") == store.count(backend="b1") == 2000
    assert len(store.get_shards(SHARED)) == 4


def test_threads_share_one_store(store: TaskStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(100):
                store.save(TaskInfo(task_id=f"uqt_t{worker}_{i}", backend="b"))
                store.get(f"uqt_t{worker}_{i}")
                store.count()
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 600


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_committed_save_survives_a_killed_process(tmp_path: Path, synchronous: str) -> None:
    """SIGKILL right after save() returns: the row is there (FULL also survives power loss)."""
    import os
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal\n"
        "from uniqc_store import TaskInfo, TaskStore\n"
        f"store = TaskStore({str(tmp_path)!r}, sqlite_synchronous={synchronous!r})\n"
        "store.save(TaskInfo(task_id='uqt_durable', backend='b'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=os.environ)
    assert result.returncode == -signal.SIGKILL
    with TaskStore(tmp_path) as store:
        assert store.get("uqt_durable") is not None


def test_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous must be one of"):
        TaskStore(tmp_path, sqlite_synchronous="OFF")
    assert not (tmp_path / "tasks.sqlite").exists()


fork_only = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs os.fork()"
)


def save_and_read(store: TaskStore, prefix: str, count: int) -> int:
    """Save ``count`` tasks through ``store`` and read each back; return how many matched."""
    seen = 0
    for i in range(count):
        store.save(TaskInfo(task_id=f"uqt_{prefix}{i:04d}", backend=prefix, shots=i))
        got = store.get(f"uqt_{prefix}{i:04d}")
        seen += got is not None and got.shots == i
    return seen


def _forked(target: Callable[[], bool]) -> multiprocessing.Process:
    """Run ``target`` in a forked child; its exit code is 0 when ``target`` returns true."""
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: sys.exit(0 if target() else 1))
    child.start()
    return child


def _joined(child: multiprocessing.Process, timeout: float) -> int | None:
    """The child's exit code; a child still running after ``timeout`` is killed (None)."""
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    return child.exitcode


@fork_only
def test_a_store_opened_before_fork_serves_children_and_parent(store: TaskStore) -> None:
    """Forked children must not talk through the parent's connections (pooled or held)."""
    store.save(TaskInfo(task_id="uqt_before", backend="x"))
    children = [
        _forked(lambda name=name: save_and_read(store, name, 300) == 300) for name in ("one", "two")
    ]
    assert [_joined(child, 120) for child in children] == [0, 0]
    assert store.count(backend="one") == store.count(backend="two") == 300
    assert save_and_read(store, "parent", 50) == 50
    assert store.get("uqt_before") is not None


@fork_only
def test_sqlite_writes_from_a_forked_child_survive_the_parent_closing(tmp_path: Path) -> None:
    """A connection carried across fork lacks the parent's locks: when the parent
    closed the file, SQLite deleted the WAL under the child and its commit vanished."""
    store = TaskStore(cache_dir=tmp_path)
    store.save(TaskInfo(task_id="uqt_parent", backend="x"))
    context = multiprocessing.get_context("fork")
    parent_closed = context.Event()

    def child_work() -> int:
        parent_closed.wait(30)
        store.save(TaskInfo(task_id="uqt_child", backend="x"))
        return store.count()

    child = _forked(lambda: child_work() == 2)
    store.close()
    parent_closed.set()
    assert _joined(child, 60) == 0
    with TaskStore(cache_dir=tmp_path) as reopened:
        assert {t.task_id for t in reopened.list()} == {"uqt_parent", "uqt_child"}
