"""SQLite WAL hygiene: the recipe's ``journal_size_limit``, a checkpoint after bulk
calls and an emptied ``-wal`` file on close (SQLite only: the servers have no WAL file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.sqlite import JOURNAL_SIZE_LIMIT


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def test_the_recipe_limits_the_wal_file(tmp_path: Path) -> None:
    with TaskStore(tmp_path) as store, store.reading() as conn:
        limit = conn.exec_driver_sql("PRAGMA journal_size_limit").scalar_one()
    assert limit == JOURNAL_SIZE_LIMIT == 64 * 1024 * 1024


def test_a_bulk_call_is_checkpointed_into_the_database_file(tmp_path: Path) -> None:
    """Below SQLite's automatic checkpoint (1,000 pages), a write stays in the WAL; a bulk
    call's PASSIVE checkpoint copies it into the database file at once."""
    path = tmp_path / "tasks.sqlite"
    with TaskStore(tmp_path) as store:
        before = path.stat().st_size
        store.save(TaskInfo(task_id="uqt_single", backend="b", metadata={"pad": "x" * 20_000}))
        assert path.stat().st_size == before  # a plain call: still in the WAL only
        store.save_many(
            TaskInfo(task_id=f"uqt_{i}", backend="b", metadata={"pad": "x" * 200})
            for i in range(1000)
        )
        assert path.stat().st_size > before + 200_000


def test_close_empties_the_wal_file_while_another_connection_stays(tmp_path: Path) -> None:
    """With another connection open SQLite keeps the ``-wal`` file; the store's close
    checkpoints it with TRUNCATE (it would be several hundred KiB otherwise)."""
    path = tmp_path / "tasks.sqlite"
    TaskStore(tmp_path).close()
    other = sqlite3.connect(path)  # idle: no read transaction in the way
    try:
        assert other.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
        store = TaskStore(tmp_path)
        for i in range(100):
            store.save(TaskInfo(task_id=f"uqt_{i}", backend="b", metadata={"pad": "x" * 2000}))
        assert _wal(path).stat().st_size > 100_000
        store.close()
        assert _wal(path).stat().st_size == 0
        assert other.execute("SELECT count(*) FROM tasks").fetchone() == (100,)
    finally:
        other.close()
