"""A pytest plugin for applications that use a TaskStore in their tests.

Installed with the package (entry point ``pytest11``), it provides the
``task_store`` fixture: a fresh, migrated, empty store per test. It never
touches data it did not create:

- ``UNIQC_STORE_TEST_URL`` unset: an in-memory SQLite database per test;
- a SQLite file URL: a new file of that name in the test's ``tmp_path``
  (the file the URL names is never opened);
- a PostgreSQL / MariaDB / MySQL URL: each pytest process (each xdist worker)
  creates its own schema (PostgreSQL: added to the URL's ``options``, whatever
  else they set, as ``-csearch_path``) or database (MySQL) named
  ``uniqc_test_<worker>_<random>`` on that server, migrates it once, empties its
  four tables after each test and drops it at the end of the session. The
  database the URL names only serves to create and drop the scratch one; the
  URL's user needs ``CREATE`` on it (PostgreSQL) or ``CREATE``/``DROP`` (MySQL).

``UNIQC_STORE_TEST_KEEP=1`` keeps the scratch schemas/databases (and stops the
per-test emptying) and names them in the run's warnings summary, for debugging.

    def test_submit(task_store):
        task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
        assert task_store.count() == 1
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from uniqc_store.db import door
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import parse_url, redact, sqlite_file_path
from uniqc_store.repository.store import TaskStore

TEST_URL_ENV = "UNIQC_STORE_TEST_URL"
KEEP_ENV = "UNIQC_STORE_TEST_KEEP"
IN_MEMORY_URL = "sqlite://"
SCRATCH_PREFIX = "uniqc_test_"


def _keep() -> bool:
    return os.environ.get(KEEP_ENV, "").lower() in ("1", "true", "yes")


def make_test_store(url: str | URL | None = None) -> TaskStore:
    """A migrated store on ``url`` (default: ``$UNIQC_STORE_TEST_URL`` or memory).

    Nothing is deleted: point it at a database of its own (``scratch_database``).
    """
    return TaskStore(url=url or os.environ.get(TEST_URL_ENV) or IN_MEMORY_URL, auto_migrate=True)


def _with_search_path(url: URL, schema: str) -> URL:
    """``url`` with ``-csearch_path=schema`` added to the libpq ``options`` it has.

    Settings the URL already passes there (``-c statement_timeout=5000``) still
    apply; ours comes last, so it wins over a ``search_path`` given before it.
    """
    given = url.query.get("options")
    ours = f"-csearch_path={schema}"
    return url.update_query_dict({"options": f"{given} {ours}" if given else ours})


@contextmanager
def scratch_database(url: URL) -> Iterator[URL]:
    """A new, empty schema (PostgreSQL) or database (MySQL) on ``url``'s server.

    Dropped on exit unless ``UNIQC_STORE_TEST_KEEP`` is set.
    """
    backend = url.get_backend_name()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{SCRATCH_PREFIX}{worker}_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with door.exempt("the pytest plugin's admin engine"), admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
                scratch = _with_search_path(url, name)
                drop = f'DROP SCHEMA "{name}" CASCADE'
            elif backend in ("mysql", "mariadb"):
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                scratch = url.set(database=name)
                drop = f"DROP DATABASE `{name}`"
            else:
                raise pytest.UsageError(
                    f"{TEST_URL_ENV}: the task_store fixture supports SQLite, PostgreSQL and "
                    f"MySQL/MariaDB, not {backend}"
                )
        try:
            yield scratch
        finally:
            if _keep():
                warnings.warn(
                    f"uniqc-store kept {redact(scratch)} ({KEEP_ENV} is set)", stacklevel=1
                )
            else:
                with door.exempt("the pytest plugin's admin engine"), admin.connect() as conn:
                    conn.execute(text(drop))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def task_store_server_url() -> Iterator[URL | None]:
    """This process's scratch database when ``UNIQC_STORE_TEST_URL`` names a server."""
    raw = os.environ.get(TEST_URL_ENV)
    url = parse_url(raw) if raw else None
    if url is None or url.get_backend_name() == "sqlite":
        yield None
        return
    with scratch_database(url) as scratch:
        make_test_store(scratch).close()  # migrate once per process
        yield scratch


@pytest.fixture
def task_store(task_store_server_url: URL | None, tmp_path: Path) -> Iterator[TaskStore]:
    """A fresh, migrated, empty TaskStore for one test (see the module's docstring)."""
    if task_store_server_url is not None:
        store = make_test_store(task_store_server_url)
        try:
            yield store
        finally:
            if not _keep():
                store.clear_all()  # the scratch database's rows: ours to delete
            store.close()
        return
    url = parse_url(os.environ.get(TEST_URL_ENV) or IN_MEMORY_URL)
    path = sqlite_file_path(url)
    if path is not None:
        url = url.set(database=str(tmp_path / (path.name or "tasks.sqlite")))
    store = make_test_store(url)
    try:
        yield store
    finally:
        store.close()
