"""``TaskStore.session()``: an ORM ``Session`` whose every statement takes the door.

A ``Session`` normally checks a connection out on its first statement and
keeps it, inside a transaction, until it commits, rolls back or closes. Beside
a store that breaks the store: on ``sqlite://`` that connection *is* the
store's, so the Session's ``BEGIN``/``ROLLBACK`` land in another thread's
transaction; and the store's lock would have to be held for the Session's
whole life.

Here each ORM statement runs in one read unit of the store's executor (its
lock, its error translation, its retries): a ``do_orm_execute`` hook runs the
statement on the unit's connection, buffers the result (``freeze()``), and
ends the Session's transaction before the unit ends, so between statements the
Session holds nothing. Objects stay loaded (``expire_on_commit=False``);
loaders that run more statements while one is loading (``selectinload``)
share its unit. Writes (flushes, ORM-enabled INSERT/UPDATE/DELETE) are
refused: they go through the repository, which validates them and keeps
moves atomic.

This module imports ``sqlalchemy.orm``; ``import uniqc_store`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import FrozenResult, Result
from sqlalchemy.orm import ORMExecuteState, Session

from uniqc_store import models  # noqa: F401  (maps the classes a query names)
from uniqc_store.db.executor import Executor
from uniqc_store.errors import StoreError

_IN_UNIT = "uniqc_store_statement_in_unit"
_WRITES_REFUSED = (
    "store.session() is for reads: write through the TaskStore (save, save_shard, "
    "archive_task, delete, ...), which checks every record; nothing was written"
)


#: How a hook runs one read unit: here, or (the async store's) where its calls run.
UnitRunner = Callable[[Callable[[], Any]], Any]


def read_only_session(executor: Executor, **kwargs: Any) -> Session:
    """A Session on the executor's engine whose statements each take one read unit."""
    kwargs.setdefault("expire_on_commit", False)
    session = Session(executor.engine, **kwargs)
    make_read_only(session, executor)
    return session


def make_read_only(session: Session, executor: Executor, run: UnitRunner | None = None) -> None:
    """Send every ORM statement of ``session`` through one read unit of ``executor``
    (run by ``run``: the async store's ``AsyncSession`` runs it on its SQLite worker
    or in the greenlet bridge) and refuse its writes."""
    event.listen(session, "before_flush", _refuse_orm_writes)
    event.listen(session, "do_orm_execute", _StatementsThroughTheDoor(executor, run))


def _here(unit: Callable[[], Any]) -> Any:
    return unit()


class _StatementsThroughTheDoor:
    """The ``do_orm_execute`` hook: one statement, one read unit."""

    def __init__(self, executor: Executor, run: UnitRunner | None = None) -> None:
        self._executor = executor
        self._run = run or _here

    def __call__(self, state: ORMExecuteState) -> Result[Any] | None:
        session = state.session
        if session.info.get(_IN_UNIT):
            return None  # a loader's statement inside ours: it runs in our unit
        if state.is_insert or state.is_update or state.is_delete:
            raise StoreError(_WRITES_REFUSED)
        frozen: FrozenResult[Any] = self._run(  # errors: the read unit's, translated
            lambda: self._executor.read(lambda conn: _run(state, conn))
        )
        return frozen()

    def __repr__(self) -> str:
        return "uniqc_store: ORM statements through the store's executor"


def _run(state: ORMExecuteState, conn: Connection) -> FrozenResult[Any]:
    """The statement on ``conn``, buffered; the Session's transaction ended either way."""
    session = state.session
    session.info[_IN_UNIT] = True
    try:
        frozen = state.invoke_statement(bind_arguments={"bind": conn}).freeze()
    except BaseException:
        session.info[_IN_UNIT] = False
        session.rollback()
        raise
    session.info[_IN_UNIT] = False
    session.commit()  # ends its (read-only) transaction on ``conn``; the objects stay loaded
    return frozen


def _refuse_orm_writes(session: Session, *_: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise StoreError(_WRITES_REFUSED)
