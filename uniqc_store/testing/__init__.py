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

Options: ``--uniqc-store-url URL`` (wins over ``UNIQC_STORE_TEST_URL``) and
``--uniqc-store-cleanup``, which first drops the scratch schemas/databases that
runs before this one left on the server (a crashed or killed run): only names
this plugin makes, only ones created before this run started
(:func:`drop_leftover_scratch`, which a script can call too).

The ``task_store_in_transaction`` fixture is the fast mode: one migrated store per
session (per worker), and per test a store whose calls run inside a transaction
rolled back when the test ends (``rollback.py``); what it cannot do is in its
docstring.

The ``task_store_server_url`` fixture (session scope) is the URL of this
process's scratch database, for code that opens the database itself (a
subprocess, an engine, ``alembic``): on a server the one ``task_store`` uses;
on SQLite a migrated file of its own in the session's temporary directory.

    def test_submit(task_store):
        task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
        assert task_store.count() == 1
"""

from __future__ import annotations

import os
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, Connection, text

from uniqc_store.db import door
from uniqc_store.db.dialects import SERVER_BACKENDS, is_mysql
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import parse_url, redact, sqlite_file_path
from uniqc_store.repository.store import TaskStore
from uniqc_store.testing.rollback import rolled_back

TEST_URL_ENV = "UNIQC_STORE_TEST_URL"
KEEP_ENV = "UNIQC_STORE_TEST_KEEP"
IN_MEMORY_URL = "sqlite://"
SCRATCH_PREFIX = "uniqc_test_"
URL_OPTION = "--uniqc-store-url"
CLEANUP_OPTION = "--uniqc-store-cleanup"
#: The names ``scratch_database`` makes: ``uniqc_test_<worker>_<unix time>_<random>``.
SCRATCH_NAME = re.compile(r"uniqc_test_([A-Za-z0-9]+)_(\d{10})_([0-9a-f]{10})")
#: The names earlier versions made (no time in them): left by a run before this one.
OLD_SCRATCH_NAME = re.compile(r"uniqc_test_([A-Za-z0-9]+)_([0-9a-f]{10})")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's command-line options (``pytest --help``, group ``uniqc-store``)."""
    group = parser.getgroup("uniqc-store", "uniqc-store's task_store fixture")
    group.addoption(
        URL_OPTION,
        metavar="URL",
        default=None,
        help=f"the database the task_store fixture makes its scratch ones on "
        f"(wins over ${TEST_URL_ENV}; default: in-memory SQLite)",
    )
    group.addoption(
        CLEANUP_OPTION,
        action="store_true",
        default=False,
        help="first drop the uniqc_test_* schemas (PostgreSQL) or databases (MySQL) that "
        "earlier runs left on that server (created before this run started)",
    )


def _configured_url(config: pytest.Config) -> str | None:
    """``--uniqc-store-url``, else ``$UNIQC_STORE_TEST_URL``, else None (in memory)."""
    given = config.getoption(URL_OPTION.lstrip("-").replace("-", "_"), default=None)
    return given or os.environ.get(TEST_URL_ENV) or None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """``--uniqc-store-cleanup``: once, in the main process (never in an xdist worker),
    before any scratch database of this run exists."""
    config = session.config
    if not config.getoption(CLEANUP_OPTION.lstrip("-").replace("-", "_"), default=False):
        return
    if hasattr(config, "workerinput"):  # an xdist worker: the controller cleaned up
        return
    raw = _configured_url(config)
    url = parse_url(raw) if raw else None
    if url is None or url.get_backend_name() == "sqlite":
        return  # SQLite scratch files live in pytest's tmp_path, which pytest prunes
    dropped = drop_leftover_scratch(url, before=time.time())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        shown = ", ".join(dropped) if dropped else "none"
        reporter.write_line(f"uniqc-store: dropped leftover scratch databases: {shown}")


def _scratch_names(conn: Connection, backend: str) -> list[str]:
    """Every schema (PostgreSQL) / database (MySQL) on the server: few, filtered here."""
    if backend == "postgresql":
        sql = "SELECT nspname FROM pg_namespace"
    else:
        sql = "SELECT schema_name FROM information_schema.schemata"
    return [str(name) for name in conn.execute(text(sql)).scalars()]


def is_leftover(name: str, before: float) -> bool:
    """Whether ``name`` is a scratch database this plugin made before ``before`` (unix time)."""
    made = SCRATCH_NAME.fullmatch(name)
    if made is not None:
        return int(made.group(2)) < before
    return OLD_SCRATCH_NAME.fullmatch(name) is not None


def drop_leftover_scratch(url: str | URL, *, before: float) -> list[str]:
    """Drop the scratch schemas (PostgreSQL) / databases (MySQL) on ``url``'s server
    that this plugin created before ``before`` (a unix time), and return their names.

    A run that crashed or was killed never reaches its own drop. Only names of the
    plugin's form are touched (``uniqc_test_<worker>_<unix time>_<random>``, and the
    older ``uniqc_test_<worker>_<random>``, which no run of this version makes);
    ``before`` keeps the ones of a run that started later. A run still going that
    started earlier on the same server would lose its own: clean up when none is.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend not in SERVER_BACKENDS:
        raise ValueError(f"drop_leftover_scratch: a PostgreSQL or MySQL URL, not {backend}")
    if not isinstance(before, (int, float)) or isinstance(before, bool):
        raise TypeError(f"before must be a unix time (a number), not {type(before).__name__}")
    admin = create_store_engine(parsed, isolation_level="AUTOCOMMIT")
    dropped: list[str] = []
    try:
        with door.exempt("the pytest plugin's admin engine"), admin.connect() as conn:
            for name in _scratch_names(conn, backend):
                if not is_leftover(name, before):
                    continue
                if backend == "postgresql":
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                dropped.append(name)
    finally:
        admin.dispose()
    return sorted(dropped)


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
    worker = re.sub(r"[^A-Za-z0-9]", "", worker) or "main"
    name = f"{SCRATCH_PREFIX}{worker}_{int(time.time())}_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with door.exempt("the pytest plugin's admin engine"), admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
                scratch = _with_search_path(url, name)
                drop = f'DROP SCHEMA "{name}" CASCADE'
            elif is_mysql(backend):
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
def _uniqc_store_server_scratch(request: pytest.FixtureRequest) -> Iterator[URL | None]:
    """This process's scratch database when the test URL names a server, else None."""
    raw = _configured_url(request.config)
    url = parse_url(raw) if raw else None
    if url is None or url.get_backend_name() == "sqlite":
        yield None
        return
    with scratch_database(url) as scratch:
        make_test_store(scratch).close()  # migrate once per process
        yield scratch


@pytest.fixture(scope="session")
def task_store_server_url(
    _uniqc_store_server_scratch: URL | None, tmp_path_factory: pytest.TempPathFactory
) -> URL:
    """The URL of this process's migrated scratch database, for code that opens it itself.

    On a server: the schema/database ``task_store`` uses (its rows are deleted after
    each test that used ``task_store``). On SQLite (a file URL or none): a file of
    its own, ``tasks.sqlite`` in a session temporary directory, never emptied; the
    ``task_store`` fixture's stores are separate files, one per test.
    """
    if _uniqc_store_server_scratch is not None:
        return _uniqc_store_server_scratch
    path = tmp_path_factory.mktemp("uniqc_store") / "tasks.sqlite"
    url = URL.create("sqlite+pysqlite", database=str(path))
    make_test_store(url).close()
    return url


@pytest.fixture
def task_store(
    _uniqc_store_server_scratch: URL | None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[TaskStore]:
    """A fresh, migrated, empty TaskStore for one test (see the module's docstring)."""
    _one_mode_per_test(request, "task_store")
    if _uniqc_store_server_scratch is not None:
        store = make_test_store(_uniqc_store_server_scratch)
        try:
            yield store
        finally:
            if not _keep():
                store.clear_all()  # the scratch database's rows: ours to delete
            store.close()
        return
    url = parse_url(_configured_url(request.config) or IN_MEMORY_URL)
    path = sqlite_file_path(url)
    if path is not None:
        url = url.set(database=str(tmp_path / (path.name or "tasks.sqlite")))
    store = make_test_store(url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def _uniqc_store_session_store(
    _uniqc_store_server_scratch: URL | None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[TaskStore]:
    """The one migrated store the rolled-back tests of this process share: on a server
    the scratch database ``task_store`` uses, on SQLite one database of the session
    (in memory, or a file named as the URL's in a session temporary directory)."""
    url = _uniqc_store_server_scratch
    if url is None:
        url = parse_url(_configured_url(request.config) or IN_MEMORY_URL)
        path = sqlite_file_path(url)
        if path is not None:
            where = tmp_path_factory.mktemp("uniqc_store_rollback")
            url = url.set(database=str(where / (path.name or "tasks.sqlite")))
    store = make_test_store(url)
    try:
        yield store
    finally:
        store.close()


#: Which of the two store fixtures a test has set up (the plugin's own, not an alias).
_MODE = pytest.StashKey[str]()
_TOGETHER = (
    "a test cannot use both task_store and task_store_in_transaction: the first commits "
    "on connections of its own, beside the second's rolled-back transaction on the same "
    "database; use one of them (task_store where several connections are needed)"
)


def _one_mode_per_test(request: pytest.FixtureRequest, mode: str) -> None:
    """Refuse the second of the two fixtures in one test (whichever pytest sets up last)."""
    if request.node.stash.get(_MODE, mode) != mode:
        pytest.fail(_TOGETHER, pytrace=False)
    request.node.stash[_MODE] = mode


@pytest.fixture
def task_store_in_transaction(
    _uniqc_store_session_store: TaskStore, request: pytest.FixtureRequest
) -> Iterator[TaskStore]:
    """A migrated, empty TaskStore whose calls run in a transaction rolled back after the test.

    The fast mode (as pytest-django's ``db``): one database per session (per xdist
    worker) on the same URLs as ``task_store``, nothing made or emptied per test, only
    a BEGIN and a ROLLBACK (SQLite: ``store.transaction()``; servers: a connection of
    its own). The store is ``store.using(conn)``'s, so inside the test:

    - every call sees the test's own writes, and nothing is ever committed: another
      connection (a second ``TaskStore`` on its URL, a subprocess, your own engine,
      ``task_store_server_url``) sees none of them, so tests of durability across
      connections, or races between connections, need ``task_store``;
    - the calls that commit as they go are refused with ``StoreError``:
      ``archive_expired``, ``purge_archived``, ``archive_many``, ``delete_many``,
      ``upgrade``, ``session()``, ``reading()``, ``transaction()``, ``using()``,
      ``close()``;
    - calls run on one connection, one at a time: sequential calls from other threads
      (a web framework's thread pool) work; threads calling at the same time are
      refused (``StoreError``: a race test needs ``task_store``); on a SQLite file
      the test holds the write lock throughout, so another connection's write waits
      and fails as busy;
    - a deadlock or serialization failure ends the transaction (``DatabaseBusyError``
      and every later call refused), as inside any ``using()`` block.

    A test may not use it beside the plugin's ``task_store`` or
    ``task_store_server_url`` (refused at setup): they share its database and commit
    on their own. An alias (``def task_store(task_store_in_transaction)`` in a
    ``conftest.py``) is fine: it makes the whole suite rolled back.
    """
    _one_mode_per_test(request, "task_store_in_transaction")
    if "task_store_server_url" in request.fixturenames:
        pytest.fail(
            "task_store_in_transaction cannot share a test with task_store_server_url: what "
            "opens that URL sees nothing of the test's rolled-back writes; use task_store",
            pytrace=False,
        )
    with rolled_back(_uniqc_store_session_store) as store:
        yield store
