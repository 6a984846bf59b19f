"""A cheap "did the tasks change?" signal, and a feed that shares it between listeners.

The dashboard's live updates need to know when another process wrote to the
store, without re-reading the tables. Each engine has a marker that is cheap to
read and changes whenever the tables do:

- SQLite: ``PRAGMA data_version`` on the store's held connection (it changes
  when any *other* connection commits) plus ``total_changes()`` (the writes of
  that same connection, which is where every write of this process goes).
- PostgreSQL: the next transaction id (``pg_snapshot_xmax(pg_current_snapshot())``),
  which moves whenever a writing transaction ends. ``LISTEN/NOTIFY`` would need
  triggers, i.e. a schema change; the per-table counters of
  ``pg_stat_user_tables`` need none but reach other sessions up to 10 s late
  (an idle backend flushes its statistics that rarely). The transaction id is
  immediate but counts the whole cluster: a write elsewhere costs a needless
  refresh, never a missed one.
- MariaDB/MySQL: the server's statement counters ``Com_insert``, ``Com_update``,
  ``Com_delete`` and their multi-table and ``REPLACE`` forms (MariaDB 10.6+
  dropped ``Innodb_rows_*``; ``Handler_*`` also count temporary tables, so
  ``SHOW STATUS`` itself would move them). They count every database on the
  server (a write elsewhere costs a needless refresh) and move when a
  statement starts, before its transaction commits, so the feed announces once
  more on the poll after they stop moving.

:class:`ChangeFeed` polls the marker (every 0.5 s) only while someone listens
and wakes every listener when it moves; with no listener it reads nothing. Its
reads go through the store's executor, as every statement of the package does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Literal, Protocol

import anyio.to_thread
from sqlalchemy import Connection, text

from uniqc_store.db.dialects import is_mysql
from uniqc_store.errors import StoreError
from uniqc_store.repository.store import TaskStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
FeedEvent = Literal["ready", "change", "heartbeat"]

_POSTGRES_MARKER = text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
_MYSQL_MARKER = text(
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_insert', 'Com_insert_select', "
    "'Com_update', 'Com_update_multi', 'Com_delete', 'Com_delete_multi', 'Com_replace', "
    "'Com_replace_select')"
)


class ChangeSignal(Protocol):
    """Something whose :meth:`read` returns a different value after the tables change."""

    #: False when the marker can move before the change commits (then the
    #: feed announces again one poll after it settles).
    exact: bool

    def read(self) -> Hashable: ...

    def close(self) -> None: ...


class _MarkerRead:
    """A marker read in one read unit of the store's executor, like every other read.

    On SQLite that is the store's held connection, which lives as long as the
    store: ``data_version`` is per connection, so it is the right one to ask.
    """

    exact = True

    def __init__(self, store: TaskStore) -> None:
        self._store = store

    def read(self) -> Hashable:
        """The current marker (the store's errors if the database cannot answer)."""
        return self._store._read(self._marker)

    def _marker(self, conn: Connection) -> Hashable:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing is held between reads."""


class SQLiteSignal(_MarkerRead):
    def _marker(self, conn: Connection) -> Hashable:
        version = conn.exec_driver_sql("PRAGMA data_version").scalar()
        own = conn.exec_driver_sql("SELECT total_changes()").scalar()
        return (version, own)


class PostgresSignal(_MarkerRead):
    def _marker(self, conn: Connection) -> Hashable:
        return conn.execute(_POSTGRES_MARKER).scalar()


class MySQLSignal(_MarkerRead):
    exact = False

    def _marker(self, conn: Connection) -> Hashable:
        return tuple(sorted((str(n), str(v)) for n, v in conn.execute(_MYSQL_MARKER)))


def open_signal(store: TaskStore) -> ChangeSignal:
    """The cheapest change signal for the store's database."""
    name = store.dialect
    if name == "sqlite":
        return SQLiteSignal(store)
    if name == "postgresql":
        return PostgresSignal(store)
    if is_mysql(name):
        return MySQLSignal(store)
    raise ValueError(f"no change signal for {name!r} databases")


class ChangeFeed:
    """Polls a change signal while anyone listens; wakes every listener when it moves.

    One poller serves every listener, so ten open dashboards cost one query
    every ``interval`` seconds, and none costs nothing.
    """

    def __init__(
        self, make_signal: Callable[[], ChangeSignal], interval: float = POLL_SECONDS
    ) -> None:
        self._make_signal = make_signal
        self._interval = interval
        self.generation = 0
        self._listeners = 0
        self._changed: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._primed = asyncio.Event()
        self.closed = False

    @property
    def listeners(self) -> int:
        """How many streams listen now (0 once every client has gone)."""
        return self._listeners

    @property
    def polling(self) -> bool:
        """Whether a poller (and its database connection) is running."""
        return self._poller is not None

    async def listen(self, heartbeat: float) -> AsyncIterator[FeedEvent]:
        """``ready`` once changes are watched, then ``change`` after each change and
        ``heartbeat`` after ``heartbeat`` quiet seconds, until the feed is closed."""
        if self.closed:
            return
        self._loop = asyncio.get_running_loop()
        self._listeners += 1
        try:
            if self._poller is None:
                self._primed = asyncio.Event()
                self._poller = asyncio.create_task(self._poll(self._primed))
            await self._primed.wait()  # the marker to compare with has been read
            seen = self.generation
            yield "ready"
            while not self.closed:
                moved = await self._moved_past(seen, heartbeat)
                if self.closed:
                    return
                if moved:
                    seen = self.generation
                yield "change" if moved else "heartbeat"
        finally:
            self._listeners -= 1
            if self._listeners == 0 and self._poller is not None:
                # The old poller closes its connection in the background; a
                # listener arriving meanwhile starts a fresh one.
                self._poller.cancel()
                self._poller = None

    async def _moved_past(self, seen: int, timeout: float) -> bool:
        """Whether the generation moves past ``seen`` within ``timeout`` seconds.

        A listener is cancelled when its client goes, often in the same turn of
        the loop as a change wakes it. ``asyncio.wait_for`` (before Python 3.12)
        returns the woken result and drops that cancellation, so the stream of a
        gone client would run on; with a ``Condition`` it could also end in "Lock
        is not acquired". ``asyncio.wait`` never drops a cancellation, and the
        generation's event holds no lock to leave behind.
        """
        if self.generation != seen:
            return True
        waiter = asyncio.ensure_future(self._next_change().wait())
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        finally:
            waiter.cancel()
        return self.generation != seen

    def close(self) -> None:
        """End every listener (callable from a signal handler or another thread)."""
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._announce()))

    def _next_change(self) -> asyncio.Event:
        """The event the next change sets (made in the running loop, on first use)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def _read_marker(self, signal: ChangeSignal) -> Hashable:
        """The signal's marker, read off the event loop (a worker thread)."""
        return await anyio.to_thread.run_sync(signal.read)

    async def _poll(self, primed: asyncio.Event) -> None:
        signal = self._make_signal()
        last: Hashable = None
        settling = False
        try:
            while self._listeners:
                try:
                    marker = await self._read_marker(signal)
                except StoreError as exc:
                    log.warning("change signal failed (retrying): %s", exc)
                else:
                    moved = last is not None and marker != last
                    if moved or settling:
                        await self._announce()
                    settling = moved and not signal.exact
                    last = marker
                primed.set()
                await asyncio.sleep(self._interval)
        finally:
            await anyio.to_thread.run_sync(signal.close)

    async def _announce(self) -> None:
        """A new generation: wake everyone waiting on the last one."""
        self.generation += 1
        woken, self._changed = self._changed, None
        if woken is not None:
            woken.set()
