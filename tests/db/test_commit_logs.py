"""Logs and events tell what happened: a committed write shows as a commit.

PostgreSQL runs a single-statement write in autocommit; it is switched
through SQLAlchemy's own isolation level, so its log reads ``COMMIT`` (not
``ROLLBACK``) and its ``commit`` event fires, as for every other write.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event

from uniqc_store import TaskInfo, TaskShard, TaskStore

pytestmark = pytest.mark.one_path  # logging at INFO watches the engine itself


def test_a_committed_write_is_logged_and_signalled_as_a_commit(
    store: TaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    commits: list[object] = []
    rollbacks: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    def on_rollback(conn: object) -> None:
        rollbacks.append(conn)

    event.listen(store.engine, "commit", on_commit)
    event.listen(store.engine, "rollback", on_rollback)
    try:
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
            store.save(TaskInfo(task_id="uqt_logged", backend="b"))
            store.save_shard(TaskShard("uqt_logged", 0, "p", "b"))
            assert store.delete("uqt_logged")
    finally:
        event.remove(store.engine, "commit", on_commit)
        event.remove(store.engine, "rollback", on_rollback)
    logged = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("COMMIT") for m in logged) == 3, logged
    assert not any(m.startswith("ROLLBACK") for m in logged), logged
    assert len(commits) == 3 and rollbacks == []
