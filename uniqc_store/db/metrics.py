"""What a store's calls cost and how they end, counted in memory and read as a snapshot.

One :class:`Metrics` per executor, that is per engine: the stores sharing an
engine share its executor, its lock, its pool and its retries, so they share
its figures too (figures per store could not split the pool, the retries or
the waits between them). The repository's edge (:func:`count_calls`, applied
once to the store's class) records every public call: its operation name, how
long it took, and the class of the exception it ended with, if any (errors are
already the store's: the executor translated them); the executor records retries and the
connection sources record waits. Nothing here needs prometheus-client: the API's
``/metrics`` is a collector reading :meth:`Metrics.snapshot`.

A call costs two ``perf_counter()`` reads and one short lock-held update (well
under a microsecond; "Metrics" in docs/production.md has the measured figures).
"""

from __future__ import annotations

import functools
import inspect
import threading
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any, TypeVar

C = TypeVar("C", bound=type)

#: Upper bounds (seconds) of the latency buckets; a last, unbounded bucket follows.
#: Finer than Prometheus's defaults at the low end: a SQLite ``get`` takes ~15 us.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: Why a unit of work ran again (the keys of ``MetricsSnapshot.retries``).
RETRY_CONFLICT = "conflict"  # the server aborted it: deadlock, serialization failure
RETRY_DROPPED = "dropped"  # its connection dropped before anything was committed
RETRY_PARENT_MOVED = "parent_moved"  # a shard's parent moved to or from the archive meanwhile
RETRY_REASONS = (RETRY_CONFLICT, RETRY_DROPPED, RETRY_PARENT_MOVED)


@dataclass(frozen=True)
class OperationFigures:
    """One operation's calls: how many, their time, its histogram, how they failed.

    ``buckets[i]`` counts the calls that took at most ``LATENCY_BUCKETS[i]``
    seconds (cumulative, as Prometheus reads buckets); the last entry counts
    every call (the unbounded bucket) and equals ``calls``. ``errors`` maps an
    exception class name (``DatabaseBusyError``, ``ValueError``, ...) to how many
    calls ended with it; failed calls are in ``calls`` and the histogram too.
    """

    calls: int
    seconds: float
    buckets: tuple[int, ...]
    errors: dict[str, int]


@dataclass(frozen=True)
class PoolFigures:
    """A server engine's connection pool at the time of the snapshot.

    ``checked_out``: connections in use by a unit of work; ``overflow``: how many
    of the open connections are beyond ``size`` (at most ``max_overflow``).
    """

    size: int
    checked_out: int
    overflow: int
    max_overflow: int | None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every figure of one executor (engine) since it was made, read at once.

    ``retries`` maps a reason (``RETRY_REASONS``) to how many attempts ran again
    for it. ``busy_waits`` counts units of work that found their connection in
    use (a SQLite store's connection held by another caller, or every pooled
    connection checked out) and ``busy_wait_seconds`` the time they waited.
    ``pool`` is None for SQLite, whose store holds one connection.
    """

    operations: dict[str, OperationFigures]
    retries: dict[str, int]
    busy_waits: int
    busy_wait_seconds: float
    pool: PoolFigures | None
    bucket_bounds: tuple[float, ...] = field(default=LATENCY_BUCKETS)

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain dicts, lists and numbers (e.g. for JSON)."""
        return asdict(self)


class _Counts:
    """One operation's running figures (guarded by the ``Metrics`` lock)."""

    __slots__ = ("buckets", "calls", "errors", "seconds")

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.errors: dict[str, int] = {}


class Metrics:
    """The running figures of one executor; thread-safe, cheap to update."""

    __slots__ = ("_busy_wait_seconds", "_busy_waits", "_lock", "_operations", "_retries")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[str, _Counts] = {}
        self._retries = dict.fromkeys(RETRY_REASONS, 0)
        self._busy_waits = 0
        self._busy_wait_seconds = 0.0

    def record(self, operation: str, seconds: float, error: str | None = None) -> None:
        """One call of ``operation`` that took ``seconds`` (and failed with ``error``).

        On every call's path: ``acquire``/``release`` rather than ``with`` (a third
        of the cost), and nothing between them can raise.
        """
        counts = self._operations.get(operation) or self._add(operation)
        index = bisect_left(LATENCY_BUCKETS, seconds)
        lock = self._lock
        lock.acquire()
        counts.calls += 1
        counts.seconds += seconds
        counts.buckets[index] += 1
        if error is not None:
            counts.errors[error] = counts.errors.get(error, 0) + 1
        lock.release()

    def _add(self, operation: str) -> _Counts:
        with self._lock:
            return self._operations.setdefault(operation, _Counts())

    def retried(self, reason: str) -> None:
        """An attempt that runs again, for ``reason`` (one of ``RETRY_REASONS``)."""
        with self._lock:
            self._retries[reason] += 1

    def waited(self, seconds: float) -> None:
        """A unit of work that found its connection in use and waited ``seconds``."""
        with self._lock:
            self._busy_waits += 1
            self._busy_wait_seconds += seconds

    def snapshot(self, pool: PoolFigures | None = None) -> MetricsSnapshot:
        """Every figure at once (consistent with each other), with ``pool`` as given."""
        with self._lock:
            operations = {
                name: OperationFigures(
                    calls=counts.calls,
                    seconds=counts.seconds,
                    buckets=_cumulative(counts.buckets),
                    errors=dict(counts.errors),
                )
                for name, counts in self._operations.items()
            }
            return MetricsSnapshot(
                operations=operations,
                retries=dict(self._retries),
                busy_waits=self._busy_waits,
                busy_wait_seconds=self._busy_wait_seconds,
                pool=pool,
            )


def _cumulative(counts: list[int]) -> tuple[int, ...]:
    total, out = 0, []
    for count in counts:
        total += count
        out.append(total)
    return tuple(out)


def pool_figures(pool: Any) -> PoolFigures | None:
    """A ``QueuePool``'s figures (``size``, ``checkedout``, ``overflow``), else None.

    SQLAlchemy has no public accessor for ``max_overflow``; it is read from the
    pool's attribute where there is one (None otherwise).
    """
    if not all(hasattr(pool, name) for name in ("size", "checkedout", "overflow")):
        return None
    max_overflow = getattr(pool, "_max_overflow", None)
    return PoolFigures(
        size=int(pool.size()),
        checked_out=int(pool.checkedout()),
        overflow=max(0, int(pool.overflow())),  # negative while fewer than size are open
        max_overflow=int(max_overflow) if isinstance(max_overflow, int) else None,
    )


def pool_exhausted(pool: Any) -> bool:
    """Whether a checkout from ``pool`` would wait now: no idle connection and no room
    to open one (a ``QueuePool`` at ``size + max_overflow``; never for other pools)."""
    max_overflow = getattr(pool, "_max_overflow", None)
    if not isinstance(max_overflow, int) or max_overflow < 0 or not hasattr(pool, "checkedin"):
        return False
    return bool(pool.checkedin() == 0 and pool.checkedout() >= pool.size() + max_overflow)


def count_calls(*not_counted: str, units: tuple[str, ...] = ()) -> Callable[[C], C]:
    """A class decorator: every public method of the class (but ``not_counted``), and
    the package's own ``units`` (``_read`` as ``read``), counted through the instance's
    ``_record`` (its executor's ``Metrics.record``, bound once: one lookup per call).

    Applied once to the class rather than per method, so a method added later is
    counted without anyone remembering to; properties and static methods are not
    calls on the database and are left alone.
    """

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            public = not name.startswith("_") and name not in not_counted
            if inspect.isfunction(member) and (public or name in units):
                setattr(cls, name, _counted(member, name.lstrip("_")))
        return cls

    return decorate


def _counted(method: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``method`` timed and counted as ``name``; a failed call under its exception's class."""
    if inspect.isgeneratorfunction(method):
        return _counted_walk(method, name)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        try:
            result = method(self, *args, **kwargs)
        except BaseException as exc:
            self._record(name, perf_counter() - started, type(exc).__name__)
            raise
        self._record(name, perf_counter() - started)
        return result

    return wrapper


def _counted_walk(
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
        except GeneratorExit:
            walk.close()
            raise
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self._record(name, spent, error)

    return wrapper
