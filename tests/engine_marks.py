"""Per-engine marks, so a run can leave an engine out: ``pytest -m "not mysql"``.

Hooks of the suite (imported into ``tests/conftest.py``). Each test gets the
marks of the engines it runs on or is about, read from its parametrisation (a parameter
whose value is an engine's name), its name and id (an engine's name as a word of them:
``[mysql-async]``, ``[sqlite-memory]``, ``test_mysql_ddl_...``, ``mysql+pymysql://``;
``mariadb`` counts as ``mysql``) and the fixtures that start a server (``pgbouncer``,
``galera``). A test that reaches an engine it does not name carries the mark itself
(``@pytest.mark.postgresql``); ``server_url`` fails a test that reaches a server whose
mark it lacks, so a missing one shows up on the first run.

A pooler or a cluster is also its server's engine: ``pgbouncer`` implies
``postgresql`` (the shared PostgreSQL behind it) and ``galera`` implies ``mysql``
(MariaDB nodes), so ``-m "not mysql"`` leaves out every MariaDB test, Galera's too.
``sqlite`` marks the SQLite variants of engine-parametrized tests; the tests that need
no server at all are ``-m "not postgresql and not mysql"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

#: Every engine mark and the marks it implies.
ENGINE_MARKS: dict[str, tuple[str, ...]] = {
    "sqlite": (),
    "postgresql": (),
    "mysql": (),
    "pgbouncer": ("postgresql",),
    "galera": ("mysql",),
}
#: Other names of an engine a parameter or id may use.
ALIASES = {"mariadb": "mysql", "postgres": "postgresql"}
#: The fixtures that start an engine of their own, by the engine.
ENGINE_FIXTURES = {"pgbouncer": "pgbouncer", "galera": "galera"}
_WORD = re.compile(r"[a-z0-9]+")

#: The test running now (its setup, call or teardown), for ``require_mark``.
_current: list[pytest.Item] = []


def _engine(word: object) -> str | None:
    if not isinstance(word, str):
        return None
    word = ALIASES.get(word, word)
    return word if word in ENGINE_MARKS else None


def engines_of(item: pytest.Item) -> set[str]:
    """The engines ``item`` runs on, with the ones they imply."""
    found = {ENGINE_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in ENGINE_FIXTURES}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        found.update(e for e in map(_engine, callspec.params.values()) if e)
    found.update(e for e in map(_engine, _WORD.findall(item.name.lower())) if e)
    found.update(m.name for m in item.iter_markers() if m.name in ENGINE_MARKS)
    for engine in list(found):
        found.update(ENGINE_MARKS[engine])
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its engines (before ``-m`` deselects)."""
    for item in items:
        have = {m.name for m in item.iter_markers()}
        for engine in sorted(engines_of(item) - have):
            item.add_marker(engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def require_mark(engine: str) -> None:
    """Fail the running test if it reaches ``engine`` without its mark (``-m`` would
    not leave it out)."""
    if not _current:  # outside a test (a script, a subprocess of the suite)
        return
    item = _current[-1]
    if item.get_closest_marker(engine) is None:
        pytest.fail(
            f"{item.nodeid} uses {engine} without the {engine!r} mark: add "
            f"@pytest.mark.{engine} (see tests/engine_marks.py)",
            pytrace=False,
        )
