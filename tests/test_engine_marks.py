"""The per-engine marks select what they say (``tests/engine_marks.py``): the suite's own
modules, collected for real with pytest's ``-m`` (in-process: the modules are imported
already), over modules that reach the engines each way the suite does (the store
variants, a fixture's parameters, a server fixture, a module mark)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "tests/repository/test_store.py",  # STORE_VARIANTS: [mysql-async], [galera], [pgbouncer]
    "tests/migrations/test_migration_locks.py",  # fixture params: mysql, galera, pgbouncer
    "tests/contract/test_galera.py",  # a module mark, names that do not say galera
    "tests/db/test_pgbouncer.py",  # the pgbouncer fixture
    "tests/contract/test_one_door.py",  # [sqlite-memory], [sqlite-file]
)
MYSQL_WORDS = re.compile(r"mysql|mariadb|galera", re.IGNORECASE)
POSTGRES_WORDS = re.compile(r"postgres|pgbouncer", re.IGNORECASE)


def collected(pytester: pytest.Pytester, expression: str) -> list[str]:
    """The test ids ``pytest --collect-only -m expression`` selects from ``MODULES``."""
    paths = [str(ROOT / module) for module in MODULES]
    items, recorder = pytester.inline_genitems("-m", expression, "--rootdir", str(ROOT), *paths)
    left_out = {i.nodeid for call in recorder.getcalls("pytest_deselected") for i in call.items}
    assert items and left_out  # -m chose some, not all
    return [item.nodeid for item in items if item.nodeid not in left_out]


def test_not_mysql_leaves_out_every_mariadb_and_galera_test(pytester: pytest.Pytester) -> None:
    kept = collected(pytester, "not mysql")
    assert not [t for t in kept if MYSQL_WORDS.search(t)]
    assert not [t for t in kept if t.startswith("tests/contract/test_galera.py")]
    assert [t for t in kept if "[sqlite" in t] and [t for t in kept if POSTGRES_WORDS.search(t)]


def test_postgresql_selects_postgresql_and_pgbouncer_only(pytester: pytest.Pytester) -> None:
    chosen = collected(pytester, "postgresql")
    through_the_fixture = "tests/db/test_pgbouncer.py::test_no_startup_options_are_sent"
    assert through_the_fixture in chosen  # and [pgbouncer] variants: pgbouncer implies it
    assert "tests/repository/test_store.py::test_save_and_get_round_trip[pgbouncer]" in chosen
    assert not [t for t in chosen if MYSQL_WORDS.search(t) or "[sqlite" in t]
    assert all(POSTGRES_WORDS.search(t) for t in chosen if t != through_the_fixture)
