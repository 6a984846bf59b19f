"""Tests that start empty without recreating anything: a store inside a rolled-back transaction.

:func:`rolled_back` is what the ``task_store_in_transaction`` fixture does per
test (``pytest-django``'s ``db`` and pytest-postgresql's way): on a store opened
once per session it opens a transaction, yields a store whose calls run inside
it (``TaskStore.using``, each write in a SAVEPOINT) and rolls it back when the
test ends, so the next test finds the database as it was. That costs a BEGIN and
a ROLLBACK per test instead of a new engine, a schema check and an emptying.

Where the transaction comes from:

- SQLite: ``store.transaction()``, the store's own connection beginning
  ``BEGIN IMMEDIATE`` (the only connection a ``sqlite://`` store has), left by
  an exception, its documented way to roll back;
- PostgreSQL, MySQL/MariaDB: a connection of the store's engine of its own,
  ``conn.begin()`` and ``rollback()``: no deadline of the store's applies to a
  test however long it runs.

What cannot work there is refused by :class:`RolledBackStore`: the calls that
commit as they go, and calls from two threads at the same time (a race test: the
store's calls share one connection, which would interleave their statements and
savepoints). Other connections cannot be refused, only told about: they see
nothing of the test's writes (the fixture's docstring says so).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

from uniqc_store.db import door
from uniqc_store.db.borrowed import BorrowedExecutor
from uniqc_store.db.translation import Translating
from uniqc_store.errors import StoreError
from uniqc_store.repository.store import TaskStore

FIXTURE = "task_store_in_transaction"
_REFUSED = (
    "{call} {why}, so it cannot run on {fixture} (whose calls run inside the test's "
    "transaction, rolled back when the test ends): use the task_store fixture for this test"
)
_COMMITS = "commits as it goes"
_OWN = "runs on connections of its own, which never see the test's rows"
_AT_ONCE = (
    "{fixture} was called from two threads at the same time: its calls share the test's "
    "one connection, which runs one call at a time (sequential calls from other threads "
    "work); a race between threads or connections needs the task_store fixture"
)


class _RollBack(Exception):
    """Leaves ``store.transaction()`` the way it rolls back: by an exception."""


class _OneCallAtATime(BorrowedExecutor):
    """``using()``'s executor, refusing a call while another thread's is running.

    A ``Connection`` is not thread-safe: two threads' savepoints on it release each
    other's (PostgreSQL) or garble the protocol (PyMySQL). Calls one after another
    from any thread are fine (a web framework's thread pool); a call inside a call
    of the same thread too.
    """

    def __init__(self, borrowed: BorrowedExecutor) -> None:
        self.__dict__.update(vars(borrowed))  # the same lender, connection and state
        self._calling = threading.Lock()
        self._caller: int | None = None

    @contextlib.contextmanager
    def _statements(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._caller == me:
            with super()._statements():
                yield
            return
        if not self._calling.acquire(blocking=False):
            raise StoreError(_AT_ONCE.format(fixture=FIXTURE))
        self._caller = me
        try:
            with super()._statements():
                yield
        finally:
            self._caller = None
            self._calling.release()


class RolledBackStore(TaskStore):
    """The store a :func:`rolled_back` block yields: ``using()``'s, one call at a time,
    with the refusals worded for a test (the calls that commit as they go, or end it)."""

    def __init__(self, inside: TaskStore) -> None:
        self.__dict__.update(vars(inside))  # the state of the store using() yielded
        borrowed = inside._executor
        assert isinstance(borrowed, BorrowedExecutor), "not a store using() yielded"
        self._executor: _OneCallAtATime = _OneCallAtATime(borrowed)

    def end(self) -> None:
        """The test ended: every later call (a store kept past it) is refused."""
        self._executor.end()

    @staticmethod
    def _refuse(call: str, why: str) -> NoReturn:
        raise StoreError(_REFUSED.format(call=call, why=why, fixture=FIXTURE))

    def archive_expired(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("archive_expired()", _COMMITS)

    def purge_archived(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("purge_archived()", _COMMITS)

    def archive_many(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("archive_many()", _COMMITS)

    def delete_many(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("delete_many()", _COMMITS)

    def upgrade(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("upgrade()", "migrates (and commits) on connections of its own")

    def session(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("session()", _OWN)

    def reading(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("reading()", _OWN)

    def transaction(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("transaction()", "commits when its block ends")

    def using(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("using()", "needs a transaction of yours, and the test's is the fixture's")

    def close(self) -> NoReturn:
        raise StoreError(f"{FIXTURE} is closed by the fixture when the test ends")


@contextlib.contextmanager
def rolled_back(store: TaskStore) -> Iterator[TaskStore]:
    """A store whose calls run inside a transaction on ``store``'s database, rolled back
    when the block ends (normally or not); ``store`` itself is refused in the block."""
    if store.dialect == "sqlite":
        with (
            contextlib.suppress(_RollBack),
            store.transaction() as conn,
            store.using(conn) as inside,
            _ended(RolledBackStore(inside)) as bound,
        ):
            yield bound
            raise _RollBack
        return
    with Translating(store.url):  # its own connection: the executor's boundary, beside it
        with door.exempt("the pytest plugin's rolled-back connection"):
            conn = store.engine.connect()
        with conn:
            transaction = conn.begin()
            try:
                with store.using(conn) as inside, _ended(RolledBackStore(inside)) as bound:
                    yield bound
            finally:
                transaction.rollback()


@contextlib.contextmanager
def _ended(store: RolledBackStore) -> Iterator[RolledBackStore]:
    try:
        yield store
    finally:
        store.end()
