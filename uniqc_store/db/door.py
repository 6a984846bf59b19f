"""The one door to the database, enforced while the program runs.

Every statement the package runs goes through a store's executor
(``executor.py``), whose units of work hold its lock, translate its errors
and apply its retry rules. A statement run beside it can break all three: on
``sqlite://`` every ``engine.connect()`` is the store's own connection, so a
stray ``BEGIN`` or ``ROLLBACK`` lands inside another thread's transaction.

So every engine the package creates or is given carries a pool ``checkout``
listener (:func:`guard`). A connection checked out inside an executor unit
(:func:`inside`) is fine; one checked out outside it by code of this package
is a violation: logged, and raised while ``UNIQC_STORE_STRICT_DOOR=1`` (the
test suite runs under it). Code of the application or of its tests may use a
shared engine as it likes. The few places that must connect on their own
say so by name with :func:`exempt`: the migration runner, the CLI's schema
commands and the pytest plugin's admin engine.

A text search would miss a connection opened through a helper or a library;
this sees every checkout.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import Engine, event

from uniqc_store.errors import StoreError

log = logging.getLogger(__name__)

STRICT_ENV = "UNIQC_STORE_STRICT_DOOR"
_PACKAGE = __name__.partition(".")[0]  # uniqc_store, from any subpackage
#: Modules between the package's code and the checkout: not the caller.
_PASS_THROUGH = ("sqlalchemy", "contextlib")

#: Set while the current thread or task runs an executor unit, or an exempt place.
_inside: ContextVar[str | None] = ContextVar("uniqc_store_door", default=None)
#: Engines (by dialect, which ``execution_options`` copies share) already guarded.
_GUARDED_KEY = "_uniqc_store_door_guarded"


class OutsideTheDoorError(StoreError):
    """The package checked a connection out beside its executor (a bug in uniqc-store)."""


@contextlib.contextmanager
def inside(unit: str = "executor unit") -> Iterator[None]:
    """Mark the block as running inside a unit of work (checkouts are allowed)."""
    token = enter(unit)
    try:
        yield
    finally:
        leave(token)


def enter(unit: str = "executor unit") -> Token[str | None]:
    """``inside()`` without the block, for a caller that is itself a context manager
    (the held SQLite connection's unit, entered by every call): ``leave`` the token."""
    return _inside.set(unit)


def leave(token: Token[str | None]) -> None:
    """End what ``enter`` began."""
    _inside.reset(token)


def exempt(place: str) -> contextlib.AbstractContextManager[None]:
    """Mark one of the named places that connect on their own (``place`` says which)."""
    return inside(f"exempt: {place}")


def is_inside() -> bool:
    """Whether the current thread or task is inside a unit (or an exempt place)."""
    return _inside.get() is not None


def guard(engine: Engine) -> None:
    """Install the checkout check on ``engine`` (once per engine)."""
    dialect: Any = engine.dialect
    if getattr(dialect, _GUARDED_KEY, False):
        return
    setattr(dialect, _GUARDED_KEY, True)
    event.listen(engine, "checkout", _on_checkout)


def _on_checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if _inside.get() is not None:
        return
    caller = _caller()
    if caller is None:
        return
    message = (
        f"{caller[0]} (line {caller[1]}) checked a connection out beside the store's "
        "executor; every statement of uniqc-store must run in one of its units of work"
    )
    log.error("%s", message)
    if os.environ.get(STRICT_ENV) == "1":
        raise OutsideTheDoorError(message)


def _caller() -> tuple[str, int] | None:
    """The package module (and line) that asked for the connection, or None when the
    first caller above SQLAlchemy is not ours (the application's own use)."""
    frame = inspect.currentframe()
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name != __name__ and not name.startswith(_PASS_THROUGH):
            if name == _PACKAGE or name.startswith(_PACKAGE + "."):
                return name, frame.f_lineno
            return None
        frame = frame.f_back
    return None
