"""Our chain and an application's own Alembic chain in one database (issue 16 point 2).

The application's chain is a real, tiny Alembic environment (one revision that
creates ``users``) keeping Alembic's default ``alembic_version``; ours keeps
``uniqc_store_alembic_version``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL, inspect, make_url, text

from tests.alembic_runner import run_alembic
from uniqc_store import SchemaOutOfDateError, TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.filters import our_tables
from uniqc_store.migrations.runner import upgrade
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.schema.versions import VERSION_TABLE_ENV

ROOT = Path(__file__).resolve().parents[2]
APP_REVISION = "a1b2c3d4e5f6"

APP_ENV = """
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

APP_REVISION_FILE = f'''"""users"""
import sqlalchemy as sa
from alembic import op

revision = "{APP_REVISION}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50))
    )


def downgrade():
    op.drop_table("users")
'''


@pytest.fixture
def chains(tmp_path: Path) -> tuple[Path, Path]:
    """The application's alembic.ini and ours (the checkout's migrations)."""
    app = tmp_path / "app_migrations"
    (app / "versions").mkdir(parents=True)
    (app / "env.py").write_text(APP_ENV)
    (app / "versions" / f"{APP_REVISION}_users.py").write_text(APP_REVISION_FILE)
    app_ini = tmp_path / "app.ini"
    app_ini.write_text(f"[alembic]\nscript_location = {app}\n")
    ours_ini = tmp_path / "uniqc.ini"
    ours_ini.write_text(f"[alembic]\nscript_location = {ROOT / 'alembic'}\n")
    return app_ini, ours_ini


def alembic(ini: Path, url: URL, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("UNIQC_STORE_URL", VERSION_TABLE_ENV)}
    plain = url.render_as_string(hide_password=False)
    result = run_alembic("-c", str(ini), "-x", f"url={plain}", *args, cwd=ini.parent, env=env)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


def tables(url: URL) -> set[str]:
    engine = create_store_engine(url, allow_foreign_tables=True)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_both_chains_deploy_into_one_database(fresh_url: URL, chains: tuple[Path, Path]) -> None:
    app_ini, ours_ini = chains
    alembic(app_ini, fresh_url, "upgrade", "head")  # the application deploys first
    alembic(ours_ini, fresh_url, "upgrade", "head")
    assert alembic(app_ini, fresh_url, "current").strip() == f"{APP_REVISION} (head)"
    assert alembic(ours_ini, fresh_url, "current").strip() == f"{CURRENT_SCHEMA_VERSION:04d} (head)"
    alembic(ours_ini, fresh_url, "check")  # the application's tables are not ours to compare
    assert {"users", "alembic_version", "uniqc_store_alembic_version", "tasks"} <= tables(fresh_url)

    with TaskStore(url=fresh_url) as store:  # a SQLite file holding both is a task database
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
    alembic(app_ini, fresh_url, "downgrade", "base")
    alembic(app_ini, fresh_url, "upgrade", "head")
    with TaskStore(url=fresh_url) as store:
        assert store.count() == 1 and store.schema_version() == CURRENT_SCHEMA_VERSION
    alembic(ours_ini, fresh_url, "downgrade", "base")
    assert alembic(app_ini, fresh_url, "current").strip() == f"{APP_REVISION} (head)"
    left = tables(fresh_url)
    assert "users" in left and "tasks" not in left
    alembic(ours_ini, fresh_url, "upgrade", "head")  # and ours deploys after theirs again
    assert alembic(ours_ini, fresh_url, "current").strip() == f"{CURRENT_SCHEMA_VERSION:04d} (head)"


def test_our_row_in_alembic_version_moves_to_our_table(
    fresh_url: URL, chains: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database deployed by a release that kept our revision in ``alembic_version``."""
    app_ini, ours_ini = chains
    engine = create_store_engine(fresh_url, foreign_keys=False)
    with monkeypatch.context() as old_release:  # such releases knew revisions up to 0005
        old_release.setenv(VERSION_TABLE_ENV, "alembic_version")
        upgrade(engine, "0005")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [("0005",)]
    if fresh_url.get_backend_name() == "sqlite":
        with TaskStore(url=fresh_url) as store:  # moves the row itself and upgrades on open
            assert store.schema_version() == CURRENT_SCHEMA_VERSION
            store.save(TaskInfo(task_id="uqt_1", backend="b"))
    else:  # the old row counts: version 5, behind head, and the store says so
        with pytest.raises(SchemaOutOfDateError, match="at schema version 5"):
            TaskStore(url=fresh_url)
    upgrade(engine)  # what a deployment runs: no manual step
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == []
        ours = conn.execute(text("SELECT version_num FROM uniqc_store_alembic_version")).all()
        assert ours == [(f"{CURRENT_SCHEMA_VERSION:04d}",)]
    if fresh_url.get_backend_name() != "sqlite":
        with TaskStore(url=fresh_url) as store:
            store.save(TaskInfo(task_id="uqt_1", backend="b"))
    engine.dispose()
    alembic(app_ini, fresh_url, "upgrade", "head")  # now the application's chain fits beside
    assert alembic(app_ini, fresh_url, "current").strip() == f"{APP_REVISION} (head)"
    assert alembic(ours_ini, fresh_url, "current").strip() == f"{CURRENT_SCHEMA_VERSION:04d} (head)"
    with TaskStore(url=fresh_url) as store:
        assert store.count() == 1


HOST_ENV = """
from alembic import context
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine

from uniqc_store.migrations.filters import include_name, include_object
from uniqc_store.records import CURRENT_SCHEMA_VERSION

metadata = MetaData()  # the application's models: its own table only
Table("users", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
arguments = context.get_x_argument(as_dictionary=True)
hooks = {
    "none": {},
    "include_name": {"include_name": include_name},
    "include_object": {"include_object": include_object},
}[arguments.get("filter", "none")]
engine = create_engine(arguments["url"])
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, **hooks)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""


@pytest.fixture
def host(chains: tuple[Path, Path]) -> tuple[Path, Path]:
    """The application's chain with an ``env.py`` that compares its models (and may
    use our filter), and ours."""
    app_ini, ours_ini = chains
    (app_ini.parent / "app_migrations" / "env.py").write_text(HOST_ENV)
    return app_ini, ours_ini


def test_the_host_filter_hides_our_tables_from_the_applications_check(
    host: tuple[Path, Path], tmp_path: Path
) -> None:
    """The real ``alembic`` command on a SQLite file holding both chains' tables."""
    app_ini, ours_ini = host
    url = make_url(f"sqlite:///{tmp_path / 'shared.sqlite'}")
    alembic(app_ini, url, "upgrade", "head")
    alembic(ours_ini, url, "upgrade", "head")
    exe = str(Path(sys.executable).with_name("alembic"))
    env = {k: v for k, v in os.environ.items() if k not in ("UNIQC_STORE_URL", VERSION_TABLE_ENV)}

    def check(hook: str) -> subprocess.CompletedProcess[str]:
        args = [exe, "-c", str(app_ini), "-x", f"url={url}", "-x", f"filter={hook}", "check"]
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)

    unfiltered = check("none")
    assert unfiltered.returncode != 0  # Alembic's "FAILED: New upgrade operations detected"
    reported = set(re.findall(r"\('remove_table', Table\('(\w+)'", unfiltered.stdout))
    assert (
        reported
        == {*our_tables()} - {"uniqc_store_migration_lock"}  # Galera's lease: never on SQLite
        == {
            "tasks",
            "archived_tasks",
            "task_shards",
            "archived_task_shards",
            "uniqc_store_alembic_version",
            "task_counts",  # SQLite's counters (0007)
        }
    ), unfiltered.stderr
    for hook in ("include_name", "include_object"):
        filtered = check(hook)
        assert filtered.returncode == 0, filtered.stderr
        assert "No new upgrade operations detected." in filtered.stdout
    # the filter hides ours only: a change to the application's own table is still seen
    with sqlite3.connect(tmp_path / "shared.sqlite") as conn:
        conn.execute("ALTER TABLE users ADD COLUMN extra INTEGER")
    changed = check("include_name")
    assert changed.returncode != 0 and "remove_column" in changed.stdout
    assert "remove_table" not in changed.stdout and "remove_index" not in changed.stdout


def test_the_host_filter_on_every_engine(fresh_url: URL, host: tuple[Path, Path]) -> None:
    """The same check on each server, with both hooks; the version table as configured."""
    app_ini, ours_ini = host
    alembic(app_ini, fresh_url, "upgrade", "head")
    alembic(ours_ini, fresh_url, "upgrade", "head")
    for hook in ("include_name", "include_object"):
        out = alembic(app_ini, fresh_url, "-x", f"filter={hook}", "check")
        assert "No new upgrade operations detected." in out
    env = {k: v for k, v in os.environ.items() if k not in ("UNIQC_STORE_URL", VERSION_TABLE_ENV)}
    plain = fresh_url.render_as_string(hide_password=False)
    result = run_alembic(
        "-c", str(app_ini), "-x", f"url={plain}", "check", cwd=app_ini.parent, env=env
    )
    assert result.returncode != 0 and "('remove_table', Table('tasks'" in result.stdout
