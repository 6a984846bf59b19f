"""Engines for the whole suite: SQLite always, PostgreSQL and MariaDB/MySQL when asked.

Set ``UNIQC_TEST_POSTGRES_URL`` / ``UNIQC_TEST_MYSQL_URL`` to a server URL to
run every engine-parametrized test there too; each test module gets a fresh
schema (PostgreSQL) or database (MySQL), dropped afterwards. A URL that is
set but unreachable fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from uniqc_store import TaskStore
from uniqc_store.db.door import STRICT_ENV
from uniqc_store.db.engine import create_store_engine

#: The suite runs with the one door enforced: a connection the package checks out
#: beside its executor raises (subprocesses, e.g. the CLI's, inherit it).
os.environ[STRICT_ENV] = "1"

BACKENDS = ("sqlite", "postgresql", "mysql")
SERVER_ENV = {
    "postgresql": "UNIQC_TEST_POSTGRES_URL",
    "mysql": "UNIQC_TEST_MYSQL_URL",
}
EXAMPLE_URL = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def server_url(backend: str) -> URL:
    """The server URL for ``backend``, or skip (unset) / fail (unreachable)."""
    variable = SERVER_ENV[backend]
    raw = os.environ.get(variable)
    if not raw:
        pytest.skip(f"{backend} tests need {variable}, e.g. {variable}={EXAMPLE_URL[backend]}")
    url = make_url(raw)
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        pytest.fail(f"{variable} is set but {backend} is unreachable: {exc.orig}", pytrace=False)
    finally:
        engine.dispose()
    return url


def create_scratch_database(backend: str) -> tuple[URL, Engine, str]:
    """A fresh, empty schema/database on a server: its URL, an admin engine, its name."""
    url = server_url(backend)
    name = f"uqt_test_{uuid.uuid4().hex[:12]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
            scratch = url.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            scratch = url.set(database=name)
    return scratch, admin, name


def drop_scratch_database(backend: str, admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        else:
            conn.execute(text(f"DROP DATABASE `{name}`"))
    admin.dispose()


@contextmanager
def scratch_url(backend: str, directory: Path) -> Iterator[URL]:
    """An empty database of ``backend``: a file in ``directory``, or a server scratch."""
    if backend == "sqlite":
        yield URL.create("sqlite+pysqlite", database=str(directory / "tasks.sqlite"))
        return
    url, admin, name = create_scratch_database(backend)
    try:
        yield url
    finally:
        drop_scratch_database(backend, admin, name)


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty database of each backend, one per test."""
    with scratch_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def module_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[URL]:
    """A database of each backend shared by one test module (emptied between tests);
    parametrized over the backends by ``pytest_generate_tests``."""
    with scratch_url(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


#: Where the repository contract runs: every engine and, on SQLite, both execution
#: paths (the direct path while nothing watches; SQLAlchemy's with a listener on).
STORE_VARIANTS = [
    pytest.param("sqlite", False, id="sqlite"),
    pytest.param("sqlite", True, id="sqlite-watched"),
    pytest.param("postgresql", False, id="postgresql"),
    pytest.param("mysql", False, id="mysql"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test taking ``store`` runs over ``STORE_VARIANTS`` (``one_path``: the
    unwatched ones only, for tests that watch the engine themselves)."""
    if "store" not in metafunc.fixturenames:
        if "module_url" in metafunc.fixturenames:
            metafunc.parametrize("module_url", BACKENDS, indirect=True, scope="module")
        return
    variants = STORE_VARIANTS
    if metafunc.definition.get_closest_marker("one_path"):
        variants = [v for v in variants if not v.values[1]]
    metafunc.parametrize(
        ("module_url", "watched"), variants, indirect=["module_url"], scope="module"
    )


def _ignore(*_args: object) -> None:
    """A cursor listener that only makes the engine watched."""


@pytest.fixture
def store(module_url: URL, watched: bool) -> Iterator[TaskStore]:
    """A migrated, empty store on each backend (and execution path)."""
    task_store = TaskStore(url=module_url, auto_migrate=True)
    if watched:
        event.listen(task_store.engine, "before_cursor_execute", _ignore)
    try:
        yield task_store
    finally:
        task_store.clear_all()
        task_store.close()


@pytest.fixture
def backend(module_url: URL) -> str:
    """The backend name of ``module_url`` (``sqlite``, ``postgresql`` or ``mysql``)."""
    name = module_url.get_backend_name()
    return "mysql" if name == "mariadb" else name
