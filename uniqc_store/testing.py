"""A pytest plugin for applications that use a TaskStore in their tests.

Installed with the package (entry point ``pytest11``), it provides the
``task_store`` fixture: a fresh, migrated store per test, on the URL in
``UNIQC_STORE_TEST_URL`` (PostgreSQL, MySQL or a SQLite file), else on an
in-memory SQLite database. Server databases are emptied after each test.

    def test_submit(task_store):
        task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
        assert task_store.count() == 1
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .store import TaskStore

TEST_URL_ENV = "UNIQC_STORE_TEST_URL"
IN_MEMORY_URL = "sqlite://"


def make_test_store(url: str | None = None) -> TaskStore:
    """A migrated, empty store on ``url`` (default: ``$UNIQC_STORE_TEST_URL`` or memory)."""
    store = TaskStore(url=url or os.environ.get(TEST_URL_ENV) or IN_MEMORY_URL, auto_migrate=True)
    store.clear_all()
    return store


@pytest.fixture
def task_store() -> Iterator[TaskStore]:
    """A fresh, migrated TaskStore for one test."""
    store = make_test_store()
    try:
        yield store
    finally:
        store.clear_all()
        store.close()
