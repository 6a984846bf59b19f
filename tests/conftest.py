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
from sqlalchemy import URL, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from tests.async_portal import portal_store
from tests.clusters import Galera, PgBouncer, private_galera, private_pgbouncer
from tests.engine_marks import (  # the per-engine marks' hooks (pytest -m "not mysql")
    pytest_collection_modifyitems,  # noqa: F401
    pytest_runtest_protocol,  # noqa: F401
    require_mark,
)
from uniqc_store import TaskStore
from uniqc_store.db.door import STRICT_ENV
from uniqc_store.db.engine import create_store_engine
from uniqc_store.testing import scratch_database

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
    """The server URL for ``backend``, or skip (unset) / fail (unreachable, or the
    running test lacks the ``backend`` mark)."""
    require_mark(backend)
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


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """A private PgBouncer in transaction mode in front of the shared PostgreSQL."""
    with private_pgbouncer(server_url("postgresql")) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def galera() -> Iterator[Galera]:
    """A private three-node MariaDB Galera cluster (about 20 s to start)."""
    with private_galera() as cluster:
        yield cluster


#: The URLs of one scratch database on every node of its cluster, by the URL the
#: store contract gets (node 1's); see ``node_urls``.
CLUSTER_NODES: dict[str, list[URL]] = {}


@contextmanager
def scratch_on_pgbouncer(bouncer: PgBouncer) -> Iterator[URL]:
    """A fresh database on the shared PostgreSQL (a database, not a schema: a search
    path would need the ``options=`` startup parameter PgBouncer refuses), reached
    through the pooler; dropped afterwards (WITH FORCE: the pooler keeps server
    connections to it)."""
    require_mark("pgbouncer")
    server = server_url("postgresql")
    name = f"uqt_test_{uuid.uuid4().hex[:12]}"
    admin = create_store_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield bouncer.url(server, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_on_galera(cluster: Galera) -> Iterator[URL]:
    """A fresh database on the cluster (made on node 1, replicated to all)."""
    require_mark("galera")
    with scratch_database(cluster.nodes[0]) as on_node_1:
        assert on_node_1.database is not None
        urls = [create_store_engine(u).url for u in cluster.urls(on_node_1.database)]  # charset
        CLUSTER_NODES[urls[0].render_as_string(hide_password=False)] = urls
        yield urls[0]


@contextmanager
def scratch_url(
    backend: str, directory: Path, request: pytest.FixtureRequest | None = None
) -> Iterator[URL]:
    """An empty database of ``backend``: a file in ``directory``, or a server scratch
    made by the plugin's ``scratch_database`` (named as the plugin names them, so
    ``--uniqc-store-cleanup`` drops what a killed run left; ``pgbouncer`` and
    ``galera`` need ``request`` to start their servers)."""
    if backend == "sqlite":
        yield URL.create("sqlite+pysqlite", database=str(directory / "tasks.sqlite"))
        return
    if backend in ("pgbouncer", "galera"):
        assert request is not None
        scratch = scratch_on_pgbouncer if backend == "pgbouncer" else scratch_on_galera
        with scratch(request.getfixturevalue(backend)) as url:
            yield url
        return
    with scratch_database(server_url(backend)) as url:
        yield url


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
    with scratch_url(request.param, tmp_path_factory.mktemp("db"), request) as url:
        yield url


#: The ``watched`` value of the variants that run the contract over ``AsyncTaskStore``.
ASYNC = "async"
#: Where the repository contract runs: every engine and, on SQLite, both execution
#: paths (the direct path while nothing watches; SQLAlchemy's with a listener on).
STORE_VARIANTS = [
    pytest.param("sqlite", False, id="sqlite"),
    pytest.param("sqlite", True, id="sqlite-watched"),
    pytest.param("postgresql", False, id="postgresql"),
    pytest.param("mysql", False, id="mysql"),
    pytest.param("pgbouncer", False, id="pgbouncer"),
    pytest.param("galera", False, id="galera"),
    pytest.param("sqlite", ASYNC, id="sqlite-async"),
    pytest.param("postgresql", ASYNC, id="postgresql-async"),
    pytest.param("mysql", ASYNC, id="mysql-async"),
]
#: The modules of the contract the ``*-async`` variants run (``AsyncTaskStore`` through
#: ``tests/async_portal.py``): a representative subset, as on the clusters (the whole
#: contract there would cost CI more than its budget; ``UNIQC_TEST_ASYNC_FULL=1`` runs
#: all of it).
ASYNC_CONTRACT = (
    "tests/repository/test_store.py",
    "tests/repository/test_archive.py",
    "tests/repository/test_retention.py",
    "tests/contract/test_arguments.py",
    "tests/contract/test_exact_keys.py",
    "tests/repository/test_pages.py",
    "tests/repository/test_by_ids.py",
)
#: The variants behind a pooler or on a cluster, and the modules of the contract they
#: run (a representative subset: the whole contract on them would cost CI more than
#: its budget; ``UNIQC_TEST_CLUSTERS_FULL=1`` runs all of it there).
CLUSTER_VARIANTS = ("pgbouncer", "galera")
CLUSTER_CONTRACT = (
    "tests/repository/test_store.py",
    "tests/repository/test_archive.py",
    "tests/compat/test_persistence.py",
    "tests/contract/test_concurrency.py",
    "tests/contract/test_soak.py",
)
#: Tests of those modules left out there: 4,000 one-row commits from 8 processes took
#: 48 s on Galera and 33 s through PgBouncer; the soak runs processes on them instead.
CLUSTER_LEFT_OUT = ("test_processes_on_a_server",)


def _runs_on_clusters(metafunc: pytest.Metafunc) -> bool:
    if os.environ.get("UNIQC_TEST_CLUSTERS_FULL") == "1":
        return True
    path = Path(metafunc.definition.path).as_posix()
    if metafunc.definition.originalname in CLUSTER_LEFT_OUT:
        return False
    return any(path.endswith(module) for module in CLUSTER_CONTRACT)


def _runs_async(metafunc: pytest.Metafunc) -> bool:
    if os.environ.get("UNIQC_TEST_ASYNC_FULL") == "1":
        return True
    if metafunc.definition.get_closest_marker("sync_only"):
        return False
    path = Path(metafunc.definition.path).as_posix()
    return any(path.endswith(module) for module in ASYNC_CONTRACT)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test taking ``store`` runs over ``STORE_VARIANTS`` (``one_path``: the
    unwatched ones only, for tests that watch the engine themselves; ``one_engine``:
    ``sqlite`` and ``sqlite-async`` only, for argument checks made before any SQL)."""
    if "store" not in metafunc.fixturenames:
        if "module_url" in metafunc.fixturenames:
            metafunc.parametrize("module_url", BACKENDS, indirect=True, scope="module")
        return
    variants = STORE_VARIANTS
    if not _runs_on_clusters(metafunc):
        variants = [v for v in variants if v.values[0] not in CLUSTER_VARIANTS]
    if not _runs_async(metafunc):
        variants = [v for v in variants if v.values[1] != ASYNC]
    if metafunc.definition.get_closest_marker("one_path"):
        variants = [v for v in variants if not v.values[1]]
    if metafunc.definition.get_closest_marker("one_engine"):
        variants = [v for v in variants if v.values[0] == "sqlite" and v.values[1] is not True]
    metafunc.parametrize(
        ("module_url", "watched"), variants, indirect=["module_url"], scope="module"
    )


def _ignore(*_args: object) -> None:
    """A cursor listener that only makes the engine watched."""


@pytest.fixture
def store(module_url: URL, watched: bool | str) -> Iterator[TaskStore]:
    """A migrated, empty store on each backend (and execution path, and over the async
    store)."""
    if watched == ASYNC:
        with portal_store(module_url, auto_migrate=True) as over_async:
            try:
                yield over_async  # type: ignore[misc]
            finally:
                over_async.clear_all()
        return
    task_store = TaskStore(url=module_url, auto_migrate=True)
    if watched:
        event.listen(task_store.engine, "before_cursor_execute", _ignore)
    try:
        yield task_store
    finally:
        task_store.clear_all()
        task_store.close()


@pytest.fixture
def node_urls(module_url: URL) -> list[URL]:
    """``module_url``'s database on every node of its cluster (node 1 first); just
    ``module_url`` elsewhere."""
    return CLUSTER_NODES.get(module_url.render_as_string(hide_password=False), [module_url])


@pytest.fixture
def backend(module_url: URL) -> str:
    """The backend name of ``module_url`` (``sqlite``, ``postgresql`` or ``mysql``)."""
    name = module_url.get_backend_name()
    return "mysql" if name == "mariadb" else name
