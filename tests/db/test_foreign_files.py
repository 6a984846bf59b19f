"""Other applications' SQLite files are refused before anything is written, and a
store runs on any engine the user made (issue 16 point 4, issue 15 point 2)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from tests import reference_db as ref
from uniqc_store import (
    APPLICATION_ID,
    ForeignDatabaseError,
    MissingParentTaskError,
    TaskInfo,
    TaskShard,
    TaskStore,
)
from uniqc_store.cli.commands import main
from uniqc_store.db.engine import create_store_engine
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.schema.orm import TaskRow


def other_app_file(path: Path, application_id: int, *, wal: bool = False) -> str:
    """An application's own database (its table, its Alembic row); returns its hash."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    conn.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
    conn.commit()
    conn.close()
    return digest(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_untouched(path: Path, before: str) -> None:
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


FOREIGN_CASES = [
    pytest.param(0, False, id="application_id-0"),
    pytest.param(APPLICATION_ID, False, id="application_id-UNIC"),
    pytest.param(0, True, id="wal-mode"),
]


@pytest.mark.parametrize(("application_id", "wal"), FOREIGN_CASES)
def test_the_library_refuses_another_applications_file(
    tmp_path: Path, application_id: int, wal: bool
) -> None:
    path = tmp_path / "other.db"
    before = other_app_file(path, application_id, wal=wal)
    message = r"other\.db holds tables that are not the task store's \(users\)"
    with pytest.raises(ForeignDatabaseError, match=message):
        TaskStore(url=f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    with pytest.raises(ForeignDatabaseError, match=message):
        TaskStore(engine=engine)
    engine.dispose()
    store_engine_error = pytest.raises(ForeignDatabaseError, match=message)
    with store_engine_error:
        create_store_engine(f"sqlite:///{path}")
    assert_untouched(path, before)


COMMANDS = [
    ("list",),
    ("show", "uqt_1"),
    ("stats",),
    ("export", "-"),
    ("current",),
    ("check",),
    ("upgrade",),
    ("downgrade", "0004"),
    ("archive-expired",),
    ("restore", "uqt_1"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_every_command_refuses_another_applications_file(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "other.db"
    before = other_app_file(path, 0)
    result = CliRunner().invoke(main, [*args, "--url", f"sqlite:///{path}"])
    assert result.exit_code == 4, result.output  # database incompatible
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "holds tables that are not the task store's (users)" in lines[0]
    assert_untouched(path, before)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_reference_files_are_still_adopted(tmp_path: Path, version: int) -> None:
    path = tmp_path / "tasks.sqlite"
    ref.build_reference_file(path, version)
    engine = create_engine(f"sqlite:///{path}")
    with TaskStore(engine=engine) as store:
        assert store.schema_version() == CURRENT_SCHEMA_VERSION
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
    engine.dispose()


def test_empty_and_new_files_are_made_into_stores(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").touch()
    for name in ("empty.sqlite", "new.sqlite"):
        with TaskStore(url=f"sqlite:///{tmp_path / name}") as store:
            assert store.schema_version() == CURRENT_SCHEMA_VERSION


def test_a_store_file_with_extra_tables_of_its_own_opens(tmp_path: Path) -> None:
    """Tables added beside ours once the file is a task database do not make it foreign."""
    with TaskStore(tmp_path) as store, store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (x)"))
    with TaskStore(tmp_path) as store:
        assert store.schema_version() == CURRENT_SCHEMA_VERSION


def test_any_engine_shared_by_stores_sessions_and_listeners(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'tasks.sqlite'}")
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    first = TaskStore(engine=engine)
    second = TaskStore(engine=engine)
    first.save(TaskInfo(task_id="uqt_1", backend="b"))
    assert second.get("uqt_1") is not None
    with engine.begin() as conn:  # the recipe is installed once: one BEGIN per transaction
        assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 1
    with Session(engine) as session, session.begin():
        session.execute(text("UPDATE tasks SET shots = 7 WHERE task_id = 'uqt_1'"))
    found = second.get("uqt_1")
    assert found is not None and found.shots == 7
    with Session(engine) as session:
        assert session.get(TaskRow, "uqt_1") is not None
    second.save(TaskInfo(task_id="uqt_2", backend="b"))
    assert first.count() == 2 and seen
    first.close()
    second.close()
    engine.dispose()


def test_a_store_engine_handed_to_another_store(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'tasks.sqlite'}")
    with TaskStore(engine=engine) as store:
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
    with TaskStore(engine=engine) as again:
        assert again.count() == 1
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 1
    engine.dispose()


def test_connections_pooled_before_the_store_get_the_recipe(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'tasks.sqlite'}")
    with engine.connect() as conn:  # pooled before any store saw the engine
        conn.execute(text("SELECT 1"))
    with TaskStore(engine=engine) as store:
        with pytest.raises(MissingParentTaskError):
            store.save_shard(TaskShard("uqt_nobody", 0, "p", "b"))  # foreign keys are on
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    engine.dispose()
