"""Opening a store: where the database is, version checks, unreachable servers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.alembic_runner import run_alembic
from tests.conftest import scratch_url
from uniqc_store import (
    DatabaseUnavailableError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    TaskInfo,
    TaskStore,
)
from uniqc_store.db import urls as engine_module
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import redact, resolve_url
from uniqc_store.migrations.runner import downgrade, upgrade
from uniqc_store.records import CURRENT_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_url_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIQC_STORE_URL", "sqlite:////from/env.sqlite")
    assert resolve_url("sqlite:///explicit.sqlite").database == "explicit.sqlite"
    assert resolve_url(None, tmp_path).database == str(tmp_path / "tasks.sqlite")
    assert resolve_url().database == "/from/env.sqlite"
    monkeypatch.delenv("UNIQC_STORE_URL")
    monkeypatch.setattr(engine_module, "DEFAULT_CACHE_DIR", tmp_path / "home" / ".uniqc" / "cache")
    assert resolve_url().database == str(tmp_path / "home" / ".uniqc" / "cache" / "tasks.sqlite")
    assert (tmp_path / "home" / ".uniqc" / "cache").is_dir()


def test_default_falls_back_to_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.delenv("UNIQC_STORE_URL", raising=False)
    monkeypatch.setattr(engine_module, "DEFAULT_CACHE_DIR", blocker / "cache")
    monkeypatch.setattr(engine_module.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert resolve_url().database == str(tmp_path / "tmp" / "uniqc" / "cache" / "tasks.sqlite")


def test_store_uses_env_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIQC_STORE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    with TaskStore() as store:
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
    assert (tmp_path / "env.sqlite").exists()


def test_engine_wins_and_in_memory_is_shared_across_threads() -> None:
    store = TaskStore(url="sqlite://")
    store.save(TaskInfo(task_id="uqt_main", backend="b"))
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(store.count()))
    worker.start()
    worker.join()
    assert seen == [1]
    other = TaskStore(url="sqlite://", engine=store.engine)
    assert other.get("uqt_main") is not None
    store.close()


def test_alembic_cli_url_rules(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    env.pop("UNIQC_STORE_URL", None)
    # a real process: the default location is read from HOME when the package is imported
    run = [sys.executable, "-m", "alembic", "upgrade", "head"]
    subprocess.run(run, cwd=ROOT, env=env, check=True, capture_output=True)
    assert (tmp_path / "home" / ".uniqc" / "cache" / "tasks.sqlite").exists()
    env["UNIQC_STORE_URL"] = f"sqlite:///{tmp_path / 'env.sqlite'}"
    assert run_alembic("upgrade", "head", env=env).returncode == 0
    assert (tmp_path / "env.sqlite").exists()
    with_x = run_alembic("-x", f"url=sqlite:///{tmp_path / 'x.sqlite'}", "upgrade", "head", env=env)
    assert with_x.returncode == 0, with_x.stderr
    assert (tmp_path / "x.sqlite").exists()


def test_passwords_never_shown() -> None:
    url = "postgresql+psycopg://alice:s3cret@db.example:5432/tasks"
    assert "s3cret" not in redact(url) and "alice" in redact(url)
    with pytest.raises(ValueError) as excinfo:
        resolve_url("not a url with pw:s3cret@host")
    assert "s3cret" not in str(excinfo.value)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_unreachable_server_names_host_not_password(backend: str) -> None:
    scheme = "postgresql+psycopg" if backend == "postgresql" else "mysql+pymysql"
    url = f"{scheme}://alice:s3cret@127.0.0.1:9/tasks"  # port 9: discard, nobody listens
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        TaskStore(url=url)
    message = str(excinfo.value)
    assert "127.0.0.1" in message and "s3cret" not in message
    error: BaseException | None = excinfo.value
    while error is not None:  # the whole chain, whatever it holds
        assert "s3cret" not in str(error) and "s3cret" not in repr(error)
        error = error.__cause__ or error.__context__


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_server_behind_head_needs_an_upgrade(backend: str, tmp_path: Path) -> None:
    with scratch_url(backend, tmp_path) as url:
        engine = create_store_engine(url)
        upgrade(engine, "0003")
        with pytest.raises(SchemaOutOfDateError, match=r"version 3.*uniqc-store upgrade"):
            TaskStore(url=url)
        with TaskStore(url=url, auto_migrate=True) as store:
            assert store.schema_version() == CURRENT_SCHEMA_VERSION
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE uniqc_store_alembic_version SET version_num = :next"),
                {"next": f"{CURRENT_SCHEMA_VERSION + 1:04d}"},
            )
        with pytest.raises(SchemaTooNewError, match=f"schema version {CURRENT_SCHEMA_VERSION + 1}"):
            TaskStore(url=url)
        engine.dispose()


def test_sqlite_file_behind_head_is_upgraded_on_open(tmp_path: Path) -> None:
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    engine = create_store_engine(url)
    upgrade(engine, "0002")
    engine.dispose()
    with TaskStore(tmp_path) as store:
        assert store.schema_version() == CURRENT_SCHEMA_VERSION
    engine = create_store_engine(url)
    downgrade(engine, "0004")
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="version 4"):
        TaskStore(tmp_path, auto_migrate=False)


def test_a_directory_where_the_file_should_be_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tasks.sqlite").mkdir()
    with pytest.raises(DatabaseUnavailableError, match=r"tasks\.sqlite: Is a directory"):
        TaskStore(tmp_path)
    assert list((tmp_path / "tasks.sqlite").iterdir()) == []
