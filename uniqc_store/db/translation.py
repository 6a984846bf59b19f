"""Database errors translated into the store's own, in one place.

Every public method of the repository runs inside :func:`translated`, so no
SQLAlchemy or driver exception leaves it; what each family's codes mean is in
``dialects.py``: a busy database becomes
``DatabaseBusyError``, an unreachable, dropped, read-only, full or corrupt
one ``DatabaseUnavailableError``, an oversized MySQL statement
``PayloadTooLargeError``, anything else ``StoreError``; the original is always
the ``__cause__``. Messages carry the driver's first line and the URL with its
password hidden, never the statement's parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterator, Mapping
from time import perf_counter
from typing import Any, TypeVar, cast

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from uniqc_store.db.dialects import POSTGRESQL, family_of
from uniqc_store.db.urls import redact
from uniqc_store.errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    PayloadTooLargeError,
    StoreError,
)

F = TypeVar("F", bound=Callable[..., Any])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classify(exc: SQLAlchemyError, backend: str) -> type[StoreError]:
    if isinstance(exc, PoolTimeoutError):
        return DatabaseBusyError  # every pooled connection stayed in use for pool_timeout
    if not isinstance(exc, DBAPIError):
        return StoreError
    family = family_of(backend)
    code = family.code_of(exc.orig)
    if family is POSTGRESQL and code is None and isinstance(exc, OperationalError):
        return DatabaseUnavailableError  # psycopg's own: the connection broke client-side
    if code in family.too_large or (
        code in family.hung_up
        and _is_write(exc.statement)
        and _size_of(exc.params) >= family.hung_up_large_bytes
    ):
        return PayloadTooLargeError
    if code in family.busy:
        return DatabaseBusyError
    if family.is_unavailable(code) or exc.connection_invalidated:
        return DatabaseUnavailableError
    return StoreError


def _is_write(statement: str | None) -> bool:
    return (statement or "").lstrip()[:6].upper() in ("INSERT", "UPDATE")


def _size_of(params: Any) -> int:
    """About how many bytes a statement's parameters take on the wire: its text and
    binary values (of every parameter set of an executemany), at least one byte each
    for the rest. Characters count one byte each: a lower bound is what the rule needs."""
    if isinstance(params, (str, bytes, bytearray, memoryview)):
        return len(params)
    if isinstance(params, Mapping):
        return sum(_size_of(value) for value in params.values())
    if isinstance(params, (list, tuple)):
        return sum(_size_of(value) for value in params)
    return 1


_ADVICE: dict[type[StoreError], str] = {
    DatabaseBusyError: "another connection held a lock this call needed past the lock-wait "
    "bound (Timeouts.lock_wait_seconds; ?timeout=SECONDS in a SQLite URL); try again. "
    "Nothing was written.",
    DatabaseUnavailableError: "check that the database is reachable, writable and not full "
    "or damaged, then try again. Nothing was written.",
    PayloadTooLargeError: "the statement is probably larger than the server's "
    "max_allowed_packet: "
    "store a smaller payload or raise that limit. Nothing was written.",
    StoreError: "the call was rolled back; nothing was written.",
}


def _first_failure(exc: SQLAlchemyError) -> SQLAlchemyError:
    """The database error that started it all: a failed statement is often followed
    by a failed rollback on the same broken connection, which hides the first."""
    first, seen = exc, exc.__context__
    while seen is not None:
        if isinstance(seen, SQLAlchemyError):
            first = seen
        seen = seen.__context__
    return first


def store_error(exc: SQLAlchemyError, url: URL) -> StoreError:
    """The store's error for a database exception (raise it ``from exc``)."""
    exc = _first_failure(exc)
    kind = _classify(exc, url.get_backend_name())
    if isinstance(exc, PoolTimeoutError):
        return kind(
            f"every pooled connection to the task database at {redact(url)} stayed in use: "
            f"{_first_line(exc)}; raise pool_size / max_overflow (engine_options) or the "
            "server's max_connections, or send fewer calls at once. Nothing was written."
        )
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return kind(f"the task database at {redact(url)} failed: {_first_line(cause)}; {_ADVICE[kind]}")


def translated(method: F) -> F:
    """Run a repository method with database errors turned into the store's own, and
    count the call in the executor's metrics (``metrics.py``) through the instance's
    ``_record`` (its executor's ``Metrics.record``, bound once: one lookup per call).

    The operation is the method's name (``save``, ``get``; the package's own
    units ``_read``, ``_write``, ``_locate`` as ``read``, ``write``, ``locate``);
    a failed call is counted under the class of the exception that left it.
    """
    name = method.__name__.lstrip("_")
    if inspect.isgeneratorfunction(method):
        return cast(F, _translated_generator(method, name))

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            result = method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            error = store_error(exc, self.url)
            self._record(name, perf_counter() - started, type(error).__name__)
            raise error from exc
        except BaseException as exc:
            self._record(name, perf_counter() - started, type(exc).__name__)
            raise
        self._record(name, perf_counter() - started)
        return result

    return cast(F, wrapper)


def _translated_generator(
    method: Callable[..., Generator[Any, None, None]], name: str
) -> Callable[..., Iterator[Any]]:
    """The same for a generator: its time is the time spent inside it (not the caller's
    between items); a walk the caller stops early is no error."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        walk = method(self, *args, **kwargs)
        spent, error = 0.0, None
        try:
            while True:
                started = perf_counter()
                try:
                    item = next(walk)
                except StopIteration:
                    return
                finally:
                    spent += perf_counter() - started
                yield item
        except SQLAlchemyError as exc:
            translated = store_error(exc, self.url)
            error = type(translated).__name__
            raise translated from exc
        except GeneratorExit:
            walk.close()
            raise
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self._record(name, spent, error)

    return wrapper
