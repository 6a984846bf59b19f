"""A write whose outcome cannot be known is reported as such, never retried; one
whose connection was dead before anything was sent is retried and applies once.

A proxy between the store and the server (``tests/commit_dropper.py``) cuts the
client off at a chosen point: while its pooled connection sits idle (nothing
sent: the store must retry), right after a statement reached the server, or
right after COMMIT did. On PostgreSQL a single-statement write runs in
autocommit, so a cut after the statement leaves it committed: the store must
say "may or may not have been written". Inside a transaction (MariaDB's
single writes, every move) a cut before COMMIT leaves nothing written: the
store retries and the call applies exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.commit_dropper import CommitDropper
from uniqc_store import DatabaseUnavailableError, TaskInfo, TaskShard, TaskStore

pytestmark = pytest.mark.one_path
DEFAULT_PORT = {"postgresql": 5432, "mysql": 3306}
UNKNOWN = "may or may not have been written"


@pytest.fixture
def proxied(store: TaskStore, backend: str) -> Iterator[tuple[TaskStore, CommitDropper]]:
    """A second store on the same database, reached through the cutting proxy."""
    if backend == "sqlite":
        pytest.skip("a SQLite store holds its own connection to a file; nothing can cut it")
    host, port = store.url.host or "127.0.0.1", store.url.port or DEFAULT_PORT[backend]
    with CommitDropper(host, port) as proxy:
        through = TaskStore(url=store.url.set(host="127.0.0.1", port=proxy.port))
        try:
            yield through, proxy
        finally:
            through.close()


@dataclass(frozen=True)
class Write:
    """A write call, the statement that carries it, and how to see that it applied."""

    name: str
    statement: bytes  # a pattern of its DML packet
    call: Callable[[TaskStore], object]
    applied: Callable[[TaskStore], bool]
    result: object  # what it returns when it ran exactly once
    single: bool  # one statement (autocommit on PostgreSQL) rather than a transaction


def _prepare(store: TaskStore) -> None:
    store.save(TaskInfo(task_id="uqt_x", backend="b", status="success", metadata={"v": 0}))
    store.save_shard(TaskShard("uqt_x", 0, "p-x", "b"))


WRITES = [
    Write(
        "delete",
        rb"DELETE FROM TASKS",
        lambda s: s.delete("uqt_x"),
        lambda s: s.get("uqt_x") is None,
        True,
        True,
    ),
    Write(
        "clear_completed",
        rb"DELETE FROM TASKS",
        lambda s: s.clear_completed(),
        lambda s: s.count() == 0,
        1,
        True,
    ),
    Write(
        "delete_shards",
        rb"DELETE FROM TASK_SHARDS",
        lambda s: s.delete_shards("uqt_x"),
        lambda s: s.get_shards("uqt_x") == [],
        1,
        True,
    ),
    Write(
        "save",
        rb"INSERT INTO TASKS",
        lambda s: s.save(TaskInfo(task_id="uqt_x", backend="b", metadata={"v": 1})),
        lambda s: (t := s.get("uqt_x")) is not None and t.metadata == {"v": 1},
        None,
        True,
    ),
    Write(
        "save_shard",
        rb"INSERT INTO TASK_SHARDS",
        lambda s: s.save_shard(TaskShard("uqt_x", 1, "p-x1", "b")),
        lambda s: len(s.get_shards("uqt_x")) == 2,
        None,
        True,
    ),
    Write(
        "archive_task",
        rb"INSERT INTO ARCHIVED_TASKS",
        lambda s: s.archive_task("uqt_x"),
        lambda s: s.get("uqt_x") is None and len(s.get_archived_shards("uqt_x")) == 1,
        True,
        False,
    ),
]
IDS = [w.name for w in WRITES]


@pytest.mark.parametrize("write", WRITES, ids=IDS)
def test_a_connection_dead_before_sending_is_retried_once(
    store: TaskStore, proxied: tuple[TaskStore, CommitDropper], write: Write
) -> None:
    through, proxy = proxied
    _prepare(store)
    assert through.count() == 1  # a pooled connection through the proxy, now idle
    proxy.cut_idle()
    assert write.call(through) == write.result
    assert write.applied(store)


@pytest.mark.parametrize("write", WRITES, ids=IDS)
def test_a_cut_after_the_statement_is_unknown_or_retried(
    store: TaskStore, backend: str, proxied: tuple[TaskStore, CommitDropper], write: Write
) -> None:
    """PostgreSQL autocommit: the statement committed, the outcome is reported unknown.
    Inside a transaction: nothing committed, so the call is run again, once."""
    through, proxy = proxied
    _prepare(store)
    proxy.cut_after(write.statement)
    if backend == "postgresql" and write.single:
        with pytest.raises(DatabaseUnavailableError, match=UNKNOWN):
            write.call(through)
        assert proxy.delivered.wait(5)
    else:
        assert write.call(through) == write.result
    assert proxy.dropped.is_set()
    assert write.applied(store)


@pytest.mark.parametrize("write", WRITES, ids=IDS)
def test_a_cut_after_commit_is_unknown(
    store: TaskStore, backend: str, proxied: tuple[TaskStore, CommitDropper], write: Write
) -> None:
    if backend == "postgresql" and write.single:
        pytest.skip("PostgreSQL runs a single-statement write in autocommit: no COMMIT is sent")
    through, proxy = proxied
    _prepare(store)
    proxy.cut_after(rb"(?<![A-Z_])COMMIT\x00?$")
    with pytest.raises(DatabaseUnavailableError, match=UNKNOWN):
        write.call(through)
    assert proxy.delivered.wait(5)
    assert write.applied(store)
