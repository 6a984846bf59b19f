"""The ``task_store`` fixture, as a user's test suite sees it (issue 16 point 3): it
never deletes data it did not create, and runs under ``pytest -n 2`` on every engine."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.conftest import server_url
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine

pytest_plugins = ["pytester"]

#: Eight tests that each expect an empty store, writing the same id: on a shared
#: database two xdist workers would see each other's rows.
EXAMPLE = """
import os
import pytest
from uniqc_store import TaskInfo


@pytest.mark.parametrize("n", range(8))
def test_starts_empty_and_writes(task_store, n):
    assert task_store.count() == 0
    assert task_store.schema_version() == 6
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


def scratch_exists(admin_url: URL, seen_url: str) -> bool:
    """Whether the scratch schema/database a test ran on is still there."""
    match = re.search(r"(uniqc_test_\w+)", seen_url)
    assert match is not None, seen_url
    engine = create_store_engine(admin_url)
    try:
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :n"
            return bool(conn.execute(text(sql), {"n": match.group(1)}).scalar_one())
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
    scratches = {re.search(r"uniqc_test_\w+", url).group(0) for url in seen}  # type: ignore[union-attr]
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
    name = re.search(r"uniqc_test_\w+", seen[0]).group(0)  # type: ignore[union-attr]
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
