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

What cannot work there is refused by :class:`RolledBackStore` (the calls that
commit as they go) or by ``using()`` itself; the rest (other connections, other
threads at the same time) is the fixture's docstring's to say.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

from sqlalchemy.exc import SQLAlchemyError

from uniqc_store.db import door
from uniqc_store.db.translation import store_error
from uniqc_store.errors import StoreError
from uniqc_store.repository.store import TaskStore

FIXTURE = "task_store_in_transaction"
_REFUSED = (
    "{call} commits as it goes, so it cannot run on {fixture} (whose calls run inside the "
    "test's transaction, rolled back when the test ends): use the task_store fixture for "
    "this test"
)


class _RollBack(Exception):
    """Leaves ``store.transaction()`` the way it rolls back: by an exception."""


class RolledBackStore(TaskStore):
    """The store a :func:`rolled_back` block yields: ``using()``'s, with the refusals
    worded for a test (the calls that commit as they go, or end the store)."""

    def __init__(self, inside: TaskStore) -> None:
        # the state of the store using() yielded, its borrowed executor included
        self.__dict__.update(vars(inside))

    @staticmethod
    def _refuse(call: str) -> NoReturn:
        raise StoreError(_REFUSED.format(call=call, fixture=FIXTURE))

    def archive_expired(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("archive_expired()")

    def purge_archived(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("purge_archived()")

    def upgrade(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("upgrade()")

    def session(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("session() (a read-only Session of its own connections)")

    def reading(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("reading() (a read unit on a connection of its own)")

    def transaction(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("transaction()")

    def using(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("using() (a transaction of yours)")

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
        ):
            yield RolledBackStore(inside)
            raise _RollBack
        return
    try:
        with door.exempt("the pytest plugin's rolled-back connection"):
            conn = store.engine.connect()
        with conn:
            transaction = conn.begin()
            try:
                with store.using(conn) as inside:
                    yield RolledBackStore(inside)
            finally:
                transaction.rollback()
    except SQLAlchemyError as exc:  # the connection or server went away meanwhile
        raise store_error(exc, store.url) from exc
