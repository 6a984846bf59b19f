"""The direct path: a statement SQLAlchemy compiled, run on the driver's cursor.

A SQLite store spends most of a ``get`` in SQLAlchemy's per-call execution
machinery, not in SQLite. When nothing can observe that machinery, skipping
it changes only the cost, so the store may take this path. It is taken only
when all of these hold, each checked rather than assumed:

- nobody is watching the engine: no ``before/after_execute``,
  ``before/after_cursor_execute``, ``handle_error`` or ``do_execute[many]``
  listener (on the engine or its class, e.g. OpenTelemetry's) and no echo or
  ``sqlalchemy.engine`` logging at INFO;
- the statement needs no type processing: no bind processor, no result
  processor on any column (checked on the compiled statement);
- the statement renders completely at compile time (no expanding IN).

Every check is made with SQLAlchemy's public API, once per statement (the
forms are cached), never with its private compiled attributes.

The SQL is the text SQLAlchemy itself compiles for the engine's dialect, with
the same parameter order; errors are wrapped exactly as SQLAlchemy wraps them
(``DBAPIError.instance``, invalidating a dropped connection). Every test of
the repository contract runs over both paths (``sqlite`` and ``sqlite-watched``
in ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

#: How many compiled statements a store keeps; its statements are prebuilt, so
#: this is never reached in practice, but memory stays bounded whatever a caller does.
CACHE_SIZE = 256
#: The logger SQLAlchemy's engines log statements to (``echo`` or logging config).
_ENGINE_LOGGER = logging.getLogger("sqlalchemy.engine.Engine")

Row = Sequence[Any]


def watched(engine: Engine) -> bool:
    """Whether anything observes statement execution on ``engine``."""
    return listening(engine) or echoing(engine)


def listening(engine: Engine) -> bool:
    """Whether an execution listener is on ``engine`` (``watched`` less the echo)."""
    events, dialect_events = engine.dispatch, engine.dialect.dispatch
    return bool(
        events.before_cursor_execute
        or events.after_cursor_execute
        or events.before_execute
        or events.after_execute
        or dialect_events.handle_error
        or dialect_events.do_execute
        or dialect_events.do_executemany
    )


def echoing(engine: Engine) -> bool:
    """Whether ``engine`` logs its statements (``echo``, or INFO on its logger)."""
    return bool(engine.echo) or _ENGINE_LOGGER.isEnabledFor(logging.INFO)


@dataclass(frozen=True)
class DriverStatement:
    """A compiled statement ready for the driver: its SQL and how to order parameters."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    #: The positional parameters for one execution, from a mapping of them by name
    #: (``fixed`` under them): one C call when nothing is fixed (``operator.itemgetter``).
    parameters: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        pick = _picker(self.names)
        if self.fixed:
            fixed = self.fixed
            object.__setattr__(self, "parameters", lambda params: pick({**fixed, **params}))
        else:
            object.__setattr__(self, "parameters", pick)


def _picker(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``lambda params: tuple(params[name] for name in names)`` (a KeyError for a missing
    one), as ``itemgetter``, which gives a tuple only for two names or more."""
    if len(names) >= 2:
        return itemgetter(*names)
    if names:
        only = names[0]
        return lambda params: (params[only],)
    return lambda _params: ()


def compile_for_driver(stmt: Executable, engine: Engine) -> DriverStatement | None:
    """The driver-ready form of ``stmt``, or None if it needs SQLAlchemy's execution.

    Decided on public API only: the compiled string and ``positiontup``, whether
    any parameter is rendered at execution time (``literal_execute_params``,
    ``post_compile_params``: expanding IN), and the bind and result processors
    each column's type has for this dialect (``TypeEngine.dialect_impl``).
    """
    dialect = engine.dialect
    compiled: Any = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    if any(_processes_binds(bind.type, dialect) for bind in compiled.binds.values()):
        return None
    columns = getattr(stmt, "exported_columns", ())
    if any(_processes_results(column.type, dialect) for column in columns):
        return None
    names = tuple(compiled.positiontup or ())
    fixed = {k: v for k, v in compiled.params.items() if v is not None}
    return DriverStatement(compiled.string, names, fixed)


def _processes_binds(type_: TypeEngine[Any], dialect: Dialect) -> bool:
    return type_.dialect_impl(dialect).bind_processor(dialect) is not None


def _processes_results(type_: TypeEngine[Any], dialect: Dialect) -> bool:
    return type_.dialect_impl(dialect).result_processor(dialect, None) is not None


class DriverStatements:
    """A bounded LRU of compiled statements, keyed by the statement object itself."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: OrderedDict[Executable, DriverStatement | None] = OrderedDict()
        self._lock = threading.Lock()  # a store is shared by threads

    def get(self, stmt: Executable) -> DriverStatement | None:
        """The statement's driver form (None: it needs SQLAlchemy's execution)."""
        with self._lock:
            try:
                self._cache.move_to_end(stmt)
                return self._cache[stmt]
            except KeyError:
                found = compile_for_driver(stmt, self._engine)
                self._cache[stmt] = found
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
                return found


def execute(
    conn: Connection,
    statement: DriverStatement,
    params: Mapping[str, Any] | list[dict[str, Any]],
    raw: Any = None,
) -> tuple[int, list[Row]]:
    """Run ``statement`` on ``conn``'s driver cursor: (rowcount, rows). ``raw``: the
    driver's connection of ``conn``, when the caller has it already."""
    if raw is None:
        raw = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        if isinstance(params, list):
            cursor.executemany(statement.sql, [statement.parameters(p) for p in params])
        else:
            cursor.execute(statement.sql, statement.parameters(params))
        return cursor.rowcount, cursor.fetchall()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, statement.sql, params, exc, raw, cursor) from exc
    finally:
        cursor.close()


def execute_alone(
    conn: Connection,
    raw: Any,
    statement: DriverStatement,
    params: Mapping[str, Any],
    before_commit: Callable[[], None] | None,
) -> int:
    """``BEGIN IMMEDIATE``, ``statement`` and ``COMMIT`` on one driver cursor of ``raw``
    (``conn``'s driver connection): a one-statement write's whole transaction in one
    call (``save``); the statement's rowcount. ``before_commit``, if any, runs just
    before the COMMIT. Errors are wrapped as ``execute`` wraps them, naming the
    statement that failed; rolling back is the caller's (the transaction may be open)."""
    cursor = raw.cursor()
    sql, failed = "BEGIN IMMEDIATE", None
    try:
        cursor.execute(sql)
        sql, failed = statement.sql, params
        cursor.execute(sql, statement.parameters(params))
        count: int = cursor.rowcount
        if before_commit is not None:
            before_commit()
        sql, failed = "COMMIT", None
        cursor.execute(sql)
        return count
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, sql, failed, exc, raw, cursor) from exc
    finally:
        cursor.close()


def execute_text(conn: Connection, sql: str, raw: Any = None) -> None:
    """Run a fixed command (``BEGIN IMMEDIATE``, ``COMMIT``) on the driver (``raw``, as
    for ``execute``)."""
    if raw is None:
        raw = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, sql, None, exc, raw, cursor) from exc
    finally:
        cursor.close()


def _wrapped(conn: Connection, sql: str, params: Any, exc: Any, raw: Any, cursor: Any) -> Exception:
    """A driver error wrapped as SQLAlchemy wraps it, a dropped connection invalidated."""
    dropped = conn.dialect.is_disconnect(exc, raw, cursor)
    if dropped:
        conn.invalidate()
    wrapped: Exception = DBAPIError.instance(
        sql, params, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=dropped
    )
    return wrapped
