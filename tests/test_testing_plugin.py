"""The ``task_store`` fixture, as a user's test suite sees it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = """
from uniqc_store import TaskInfo


def test_one(task_store):
    task_store.save(TaskInfo(task_id="uqt_1", backend="dummy"))
    assert task_store.count() == 1


def test_two_starts_empty(task_store):
    assert task_store.count() == 0
    assert task_store.schema_version() == 5
"""


def test_fixture_in_memory(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIQC_STORE_TEST_URL", raising=False)
    pytester.makepyfile(EXAMPLE)
    result = pytester.runpytest_subprocess()  # the plugin comes from its entry point
    result.assert_outcomes(passed=2)


def test_fixture_on_a_swapped_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, module_url: object
) -> None:
    from sqlalchemy import URL

    assert isinstance(module_url, URL)
    monkeypatch.setenv("UNIQC_STORE_TEST_URL", module_url.render_as_string(hide_password=False))
    pytester.makepyfile(EXAMPLE)
    result = pytester.runpytest_subprocess()  # the plugin comes from its entry point
    result.assert_outcomes(passed=2)
