"""The ``task_store`` fixture, as a user's test suite sees it (issue 16 point 3): it
never deletes data it did not create, and runs under ``pytest -n 2`` on every engine."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url, text

from tests.conftest import server_url
from tests.private_servers import private_mariadb
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.records import CURRENT_SCHEMA_VERSION

pytest_plugins = ["pytester"]

#: Eight tests that each expect an empty store, writing the same id: on a shared
#: database two xdist workers would see each other's rows.
EXAMPLE = """
import os
import pytest
from uniqc_store import TaskInfo
from uniqc_store.records import CURRENT_SCHEMA_VERSION


@pytest.mark.parametrize("n", range(8))
def test_starts_empty_and_writes(task_store, n):
    assert task_store.count() == 0
    assert task_store.schema_version() == CURRENT_SCHEMA_VERSION
    task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
    assert task_store.count() == 1
    with open(os.environ["SEEN_URLS"], "a") as seen:
        seen.write(task_store.url.render_as_string(hide_password=False) + "\\n")
"""


def plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def run_example(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, url: str | None, *args: str
) -> tuple[pytest.RunResult, list[str]]:
    if url is None:
        monkeypatch.delenv("UNIQC_STORE_TEST_URL", raising=False)
    else:
        monkeypatch.setenv("UNIQC_STORE_TEST_URL", url)
    seen = pytester.path / "seen.txt"
    monkeypatch.setenv("SEEN_URLS", str(seen))
    path = pytester.makepyfile(EXAMPLE)
    args = tuple(a.replace("{file}", str(path)) for a in args)
    result = pytester.runpytest_subprocess(*args)  # the plugin comes from its entry point
    return result, seen.read_text().splitlines() if seen.exists() else []


def scratch_name(url: str) -> str:
    """The scratch schema/database the inner run's plugin made: the last one the URL
    names (the suite's own scratch, which the URL it was given holds, comes first)."""
    names: list[str] = re.findall(r"uniqc_test_\w+", url)
    return names[-1]


def scratch_exists(admin_url: URL, seen_url: str) -> bool:
    """Whether the scratch schema/database a test ran on is still there."""
    engine = create_store_engine(admin_url)
    try:
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :n"
            return bool(conn.execute(text(sql), {"n": scratch_name(seen_url)}).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_in_memory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: tuple[str, ...]
) -> None:
    result, seen = run_example(pytester, monkeypatch, None, *workers)
    result.assert_outcomes(passed=8)
    assert set(seen) == {"sqlite://"}


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_sqlite_file_url_is_never_opened(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workers: tuple[str, ...],
) -> None:
    theirs = tmp_path / "tasks.sqlite"
    with TaskStore(url=f"sqlite:///{theirs}") as store:
        store.save(TaskInfo(task_id="uqt_precious", backend="b"))
    before = hashlib.sha256(theirs.read_bytes()).hexdigest()
    result, seen = run_example(pytester, monkeypatch, f"sqlite:///{theirs}", *workers)
    result.assert_outcomes(passed=8)
    assert len(set(seen)) == 8 and str(theirs) not in "".join(seen)
    assert hashlib.sha256(theirs.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_server_url_gets_scratch_databases(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    store: TaskStore,
    backend: str,
    workers: tuple[str, ...],
) -> None:
    if backend == "sqlite":
        pytest.skip("the server case; SQLite files are tested above")
    store.save(TaskInfo(task_id="uqt_precious", backend="b"))  # the user's own row
    result, seen = run_example(pytester, monkeypatch, plain(store.url), *workers)
    result.assert_outcomes(passed=8)
    assert store.get("uqt_precious") is not None and store.count() == 1
    scratches = {scratch_name(url) for url in seen}
    assert len(scratches) == (2 if workers else 1)
    assert not any(scratch_exists(store.url, url) for url in seen)


def test_keep_leaves_the_scratch_database_and_names_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, store: TaskStore, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite files live in pytest's tmp_path, which pytest keeps anyway")
    monkeypatch.setenv("UNIQC_STORE_TEST_KEEP", "1")
    result, seen = run_example(
        pytester, monkeypatch, plain(store.url), "{file}::test_starts_empty_and_writes[0]"
    )
    result.assert_outcomes(passed=1, warnings=1)
    name = scratch_name(seen[0])
    assert "uniqc-store kept" in result.stdout.str() and name in result.stdout.str()
    assert scratch_exists(store.url, seen[0])
    with TaskStore(url=seen[0]) as kept:
        assert kept.count() == 1
    engine = create_store_engine(store.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        drop = (
            f'DROP SCHEMA "{name}" CASCADE'
            if backend == "postgresql"
            else f"DROP DATABASE `{name}`"
        )
        conn.execute(text(drop))
    engine.dispose()


#: The URL's own libpq options must still apply in the scratch schema.
OPTIONS_EXAMPLE = """
import sqlalchemy


def test_the_urls_options_still_apply(task_store):
    engine = sqlalchemy.create_engine(task_store.url)  # the URL the fixture's store runs on
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == EXPECTED_LOCK_TIMEOUT
        assert conn.exec_driver_sql("SELECT current_schema()").scalar().startswith("uniqc_test_")
    engine.dispose()
    task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
    assert task_store.count() == 1
"""


@pytest.mark.parametrize(
    ("options", "lock_timeout"),
    [
        ("options=-c%20statement_timeout%3D5000", "0"),
        ("options=-c%20statement_timeout%3D5000%20-c%20lock_timeout%3D2000", "2s"),
        ("options=-c%20statement_timeout%3D5s%20-c%20search_path%3Dpublic", "0"),  # ours wins
    ],
    ids=["one", "two", "with-a-search-path"],
)
def test_the_urls_postgresql_options_are_kept_beside_the_search_path(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, options: str, lock_timeout: str
) -> None:
    base = plain(server_url("postgresql"))
    url = f"{base}{'&' if '?' in base else '?'}{options}"
    monkeypatch.setenv("UNIQC_STORE_TEST_URL", url)
    pytester.makepyfile(
        "from uniqc_store import TaskInfo\n"
        f"EXPECTED_LOCK_TIMEOUT = {lock_timeout!r}\n" + OPTIONS_EXAMPLE
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


ENGINES = ["sqlite", "postgresql", "mysql"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_url_option_wins_over_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    # a file URL: a file of that name in each test's tmp_path, as with the variable
    option = "sqlite:///chosen.sqlite" if engine == "sqlite" else plain(server_url(engine))
    result, seen = run_example(
        pytester, monkeypatch, "sqlite:///never-opened.sqlite", "--uniqc-store-url", option
    )
    result.assert_outcomes(passed=8)
    if engine == "sqlite":
        assert all(url.endswith("/chosen.sqlite") for url in seen) and len(set(seen)) == 8
        help_text = pytester.runpytest_subprocess("--help").stdout.str()
        assert "--uniqc-store-url=URL" in help_text and "--uniqc-store-cleanup" in help_text
    else:
        assert all("uniqc_test_" in url for url in seen)
        assert seen[0].split("://")[0] == option.split("://")[0]
    assert not (pytester.path / "never-opened.sqlite").exists()


def _admin_run(url: URL, *statements: str) -> None:
    engine = create_store_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _names(url: URL) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            sql = "SELECT schema_name FROM information_schema.schemata"
            return {str(n) for n in conn.execute(text(sql)).scalars()}
    finally:
        engine.dispose()


@contextmanager
def a_server_of_its_own(engine: str) -> Iterator[URL]:
    """A server (MariaDB) or a database (PostgreSQL: schemas are per database) where no
    one else's run keeps scratch databases: the cleanup would drop theirs too."""
    if engine == "postgresql":
        shared = server_url(engine)
        name = f"uniqc_cleanup_{uuid.uuid4().hex[:8]}"
        _admin_run(shared, f'CREATE DATABASE "{name}"')
        try:
            yield shared.set(database=name)
        finally:
            _admin_run(shared, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    server_url(engine)  # skipped when MariaDB is not configured at all
    with private_mariadb() as server:
        yield make_url(server.url)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])  # SQLite's are in tmp_path
def test_cleanup_drops_only_our_leftovers_from_before_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    with a_server_of_its_own(engine) as url:
        _cleanup_on(url, engine, pytester, monkeypatch)


def _cleanup_on(
    url: URL, engine: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = "uniqc_test_main_1000000000_0123456789"  # a run of 2001 that never dropped it
    older = "uniqc_test_gw1_abcdef0123"  # the name an earlier version made
    later = "uniqc_test_main_9999999999_0123456789"  # "created after this run started"
    others = ["uniqc_test_notours", "uniqc_testing_app"]  # not names the plugin makes
    names = [crashed, older, later, *others]
    quote = '"' if engine == "postgresql" else "`"
    kind = "SCHEMA" if engine == "postgresql" else "DATABASE"
    _admin_run(url, *(f"CREATE {kind} {quote}{n}{quote}" for n in names))
    try:
        assert set(names) <= _names(url)
        result, seen = run_example(
            pytester, monkeypatch, plain(url), "--uniqc-store-cleanup", "-n", "2"
        )
        result.assert_outcomes(passed=8)
        result.stdout.fnmatch_lines(
            [f"uniqc-store: dropped leftover scratch databases: {older}, {crashed}"]
        )
        left = _names(url)
        assert crashed not in left and older not in left
        assert {later, *others} <= left  # and the workers' own lived through the run:
        assert len({scratch_name(u) for u in seen}) == 2
        assert not any(scratch_exists(url, u) for u in seen)  # dropped at its end
    finally:
        _admin_run(url, *(f"DROP {kind} IF EXISTS {quote}{n}{quote}" for n in names))


def test_leftovers_are_recognised_by_name_and_time() -> None:
    from uniqc_store.testing import drop_leftover_scratch, is_leftover

    assert is_leftover("uniqc_test_gw0_1700000000_0123456789", before=1_700_000_001)
    assert not is_leftover("uniqc_test_gw0_1700000000_0123456789", before=1_700_000_000)
    assert is_leftover("uniqc_test_main_0123456789", before=0)  # an earlier version's
    for name in ("uniqc_test_notours", "uniqc_test_main_1700000000_01234", "public", "test"):
        assert not is_leftover(name, before=2e9)
    with pytest.raises(ValueError, match="PostgreSQL or MySQL"):
        drop_leftover_scratch("sqlite://", before=0)
    with pytest.raises(TypeError, match="unix time"):
        drop_leftover_scratch("postgresql://nobody@127.0.0.1:1/x", before="now")  # type: ignore[arg-type]


#: The scratch URL fixture: a database a test can open itself, on every engine.
SCRATCH_URL_EXAMPLE = """
import subprocess
import sys

from uniqc_store import TaskInfo, TaskStore
from uniqc_store.records import CURRENT_SCHEMA_VERSION


def test_a_subprocess_writes_where_the_test_reads(task_store_server_url):
    code = (
        "import sys; from uniqc_store import TaskInfo, TaskStore; "
        "TaskStore(url=sys.argv[1]).save(TaskInfo(task_id='uqt_sub', backend='dummy'))"
    )
    url = task_store_server_url.render_as_string(hide_password=False)
    subprocess.run([sys.executable, "-c", code, url], check=True)
    with TaskStore(url=task_store_server_url) as store:
        assert store.schema_version() == CURRENT_SCHEMA_VERSION
        assert store.get("uqt_sub") is not None
    print("SCRATCH", url)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_the_scratch_url_fixture_is_usable_on_every_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    if engine == "sqlite":
        monkeypatch.delenv("UNIQC_STORE_TEST_URL", raising=False)
    else:
        monkeypatch.setenv("UNIQC_STORE_TEST_URL", plain(server_url(engine)))
    pytester.makepyfile(SCRATCH_URL_EXAMPLE)
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    shown = re.search(r"SCRATCH (\S+)", result.stdout.str())
    assert shown is not None
    if engine == "sqlite":
        assert shown.group(1).startswith("sqlite+pysqlite:////")
        assert shown.group(1).endswith("/tasks.sqlite")
    else:
        assert "uniqc_test_" in shown.group(1)
        assert not scratch_exists(server_url(engine), shown.group(1))


#: Rolled-back tests: each writes the same id into what must be an empty store, and
#: records its store's engine (one per process: nothing is made per test).
ROLLBACK_EXAMPLE = """
import os
import pytest
from uniqc_store import TaskInfo
from uniqc_store.records import CURRENT_SCHEMA_VERSION


@pytest.mark.parametrize("n", range(8))
def test_starts_empty_and_writes(task_store_in_transaction, n):
    store = task_store_in_transaction
    assert store.count() == 0 and store.get("uqt_1") is None
    store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
    assert store.count() == 1 and store.schema_version() == CURRENT_SCHEMA_VERSION
    with open(os.environ["SEEN_URLS"], "a") as seen:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        seen.write(f"{worker} {os.getpid()} {id(store.engine)} {store.url}\\n")
"""


def run_rolled_back(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str, *args: str
) -> tuple[pytest.RunResult, list[str]]:
    url = None if engine == "sqlite" else plain(server_url(engine))
    if url is None:
        monkeypatch.delenv("UNIQC_STORE_TEST_URL", raising=False)
    else:
        monkeypatch.setenv("UNIQC_STORE_TEST_URL", url)
    seen = pytester.path / "seen.txt"
    monkeypatch.setenv("SEEN_URLS", str(seen))
    pytester.makepyfile(ROLLBACK_EXAMPLE)
    result = pytester.runpytest_subprocess(*args)
    return result, seen.read_text().splitlines() if seen.exists() else []


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
@pytest.mark.parametrize("engine", ENGINES)
def test_rolled_back_tests_start_empty_on_one_database_per_process(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
    workers: tuple[str, ...],
) -> None:
    result, seen = run_rolled_back(pytester, monkeypatch, engine, *workers)
    result.assert_outcomes(passed=8)
    processes = {line.split()[1] for line in seen}
    assert len(processes) == (2 if workers else 1)
    # one store (one engine) per process, every test of it on that one
    assert len({tuple(line.split()[1:3]) for line in seen}) == len(processes)
    if engine != "sqlite":
        urls = {line.split()[3] for line in seen}
        assert len(urls) == len(processes) and all("uniqc_test_" in u for u in urls)


def test_a_sqlite_file_url_gives_one_file_per_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    theirs = tmp_path / "tasks.sqlite"
    monkeypatch.setenv("UNIQC_STORE_TEST_URL", f"sqlite:///{theirs}")
    seen = pytester.path / "seen.txt"
    monkeypatch.setenv("SEEN_URLS", str(seen))
    pytester.makepyfile(ROLLBACK_EXAMPLE)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=8)
    files = {line.split()[3] for line in seen.read_text().splitlines()}
    assert len(files) == 2 and all(f.endswith("/tasks.sqlite") for f in files)
    assert str(theirs) not in files and not theirs.exists()


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_nothing_a_rolled_back_test_wrote_was_committed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setenv("UNIQC_STORE_TEST_KEEP", "1")  # keep the scratch database to look
    result, seen = run_rolled_back(pytester, monkeypatch, engine)
    result.assert_outcomes(passed=8, warnings=1)
    kept = make_url(seen[0].split()[3]).set(password=server_url(engine).password)
    try:
        with TaskStore(url=kept) as store:
            assert store.count() == 0 and store.schema_version() == CURRENT_SCHEMA_VERSION
    finally:
        name = scratch_name(seen[0])
        kind = "SCHEMA" if engine == "postgresql" else "DATABASE"
        quoted = f'"{name}" CASCADE' if engine == "postgresql" else f"`{name}`"
        drop = f"DROP {kind} {quoted}"
        _admin_run(server_url(engine), drop)


#: What cannot work in the rolled-back mode, refused at once with the reason, and
#: what does (sequential calls from other threads: an app under TestClient).
REFUSED_EXAMPLE = """
import threading
import pytest
from uniqc_store import StoreError, TaskInfo


@pytest.mark.parametrize(
    "call",
    [
        "archive_expired", "purge_archived", "archive_many", "delete_many", "upgrade",
        "session", "reading", "transaction", "using", "close",
    ],
)
def test_what_commits_as_it_goes_is_refused(task_store_in_transaction, call):
    refused = "cannot run on task_store_in_transaction|closed by the fixture"
    with pytest.raises(StoreError, match=refused):
        getattr(task_store_in_transaction, call)()
    assert task_store_in_transaction.count() == 0  # still usable


def test_sequential_calls_from_another_thread_work(task_store_in_transaction):
    saver = threading.Thread(
        target=task_store_in_transaction.save, args=(TaskInfo(task_id="uqt_t", backend="b"),)
    )
    saver.start()
    saver.join()
    assert task_store_in_transaction.get("uqt_t") is not None


def test_an_app_under_testclient_sees_the_tests_rows(task_store_in_transaction):
    from fastapi.testclient import TestClient
    from uniqc_store.api import create_app

    task_store_in_transaction.save(TaskInfo(task_id="uqt_app", backend="b"))
    client = TestClient(create_app(task_store_in_transaction, allowed_hosts=["testserver"]))
    assert client.get("/api/tasks/uqt_app").json()["task_id"] == "uqt_app"
    deleted = client.delete("/api/tasks/uqt_app", headers={"X-Requested-With": "test"})
    assert deleted.status_code == 200  # a write, from the app's threads
    assert task_store_in_transaction.get("uqt_app") is None


def test_two_threads_at_once_are_refused(task_store_in_transaction):
    store, refused, inside = task_store_in_transaction, [], threading.Event()
    release = threading.Event()

    def slow_modify(info):  # holds the connection's one call open
        inside.set()
        release.wait(10)
        info.status = "running"

    store.save(TaskInfo(task_id="uqt_slow", backend="b"))
    holder = threading.Thread(target=store.modify, args=("uqt_slow", slow_modify))
    holder.start()
    assert inside.wait(10)
    try:
        store.save(TaskInfo(task_id="uqt_other", backend="b"))
    except StoreError as exc:
        refused.append(str(exc))
    release.set()
    holder.join()
    assert refused and "two threads at the same time" in refused[0]
    assert store.get("uqt_slow").status == "running" and store.get("uqt_other") is None


def test_beside_task_store(task_store, task_store_in_transaction):
    pass


def test_beside_task_store_the_other_way(task_store_in_transaction, task_store):
    pass


def test_beside_the_server_url(task_store_in_transaction, task_store_server_url):
    pass
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_what_cannot_work_rolled_back_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    if engine == "sqlite":
        monkeypatch.delenv("UNIQC_STORE_TEST_URL", raising=False)
    else:
        monkeypatch.setenv("UNIQC_STORE_TEST_URL", plain(server_url(engine)))
    pytester.makepyfile(REFUSED_EXAMPLE)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=13, errors=3)
    result.stdout.fnmatch_lines(
        ["*a test cannot use both task_store and task_store_in_transaction:*"]
    )
    result.stdout.fnmatch_lines(
        ["*task_store_in_transaction cannot share a test with task_store_server_url:*"]
    )


#: A suite made rolled back throughout by an alias in its conftest.py.
ALIAS_CONFTEST = """
import pytest


@pytest.fixture
def task_store(task_store_in_transaction):
    return task_store_in_transaction
"""


def test_an_alias_makes_task_store_rolled_back(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(ALIAS_CONFTEST)
    pytester.makepyfile(
        test_alias="""
from uniqc_store.testing.rollback import RolledBackStore


def test_the_alias_is_the_rolled_back_store(task_store):
    assert isinstance(task_store, RolledBackStore)
"""
    )
    result, _ = run_example(pytester, monkeypatch, None)
    result.assert_outcomes(passed=9)  # the eight of EXAMPLE, each starting empty
