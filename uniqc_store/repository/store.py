"""``TaskStore``: the reference store's API on SQLAlchemy Core.

Every public method is one unit of work run by the store's ``Executor``
(which owns the transaction; helpers take a ``Transaction`` and never
commit) and checks its arguments before any SQL. Database errors become the
store's own once, at the executor's boundary (``db.translation``); each call is
counted in the engine's metrics (``db.metrics.count_calls``, on the class). The
statements are built once (``statements.py``).
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import URL, Connection, Engine, Executable, Table
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from uniqc_store.db.borrowed import borrowing, refuse_inside
from uniqc_store.db.engine import store_engine
from uniqc_store.db.executor import Transaction, bulk, executor_for
from uniqc_store.db.metrics import RETRY_PARENT_MOVED, MetricsSnapshot, count_calls
from uniqc_store.db.translation import caused_by
from uniqc_store.db.urls import redact, sqlite_file_path
from uniqc_store.errors import (
    MissingParentTaskError,
    PartialRunError,
    StoreError,
    TaskConflictError,
)
from uniqc_store.migrations.opening import open_schema
from uniqc_store.migrations.versions import database_version
from uniqc_store.records import (
    TERMINAL_STATUSES,
    TaskInfo,
    TaskShard,
    TaskStatus,
    normalize_status,
    utc_now_iso,
)
from uniqc_store.repository import archive, by_ids, counts, pages, staging
from uniqc_store.repository.pages import Page
from uniqc_store.repository.statements import (
    Statements,
    keyset_page,
    listing,
    scan_page,
)
from uniqc_store.schema.decoding import TaskDecoder, row_to_shard
from uniqc_store.schema.tables import archived_tasks, tasks
from uniqc_store.schema.validation import (
    MAX_BATCH_SIZE,
    MAX_PAGE_SIZE,
    flag,
    int_in_range,
    lookup_key,
    lookup_keys,
    optional_lookup_key,
    row_count,
)
from uniqc_store.schema.values import shard_to_row, task_to_row
from uniqc_store.timeouts import Timeouts

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


@count_calls(
    "upgrade",
    "session",
    "reading",
    "transaction",
    "using",
    "close",
    units=("_open_schema", "_walk", "_write", "_locate", "_read"),
)
class TaskStore:
    """Tasks, their shards and their archive, in one database.

    ``TaskStore(cache_dir=None, *, url=None, engine=None, auto_migrate=None)``:
    the database is ``engine`` > ``url`` > ``cache_dir/tasks.sqlite`` >
    ``$UNIQC_STORE_URL`` > ``~/.uniqc/cache/tasks.sqlite``. SQLite databases
    behind head are upgraded on open; server databases only with
    ``auto_migrate=True`` (else ``SchemaOutOfDateError``).

    ``sqlite_synchronous="NORMAL"`` trades the reference's power-loss
    durability for 3x faster commits: a committed write still survives a
    crash of the process, not of the machine. The default is ``"FULL"``.

    ``engine_options``: keyword arguments for ``create_engine`` over the
    store's defaults (pool sizes, ``connect_args`` merged key by key); ignored
    with ``engine=``, whose options are the caller's. ``timeouts``: the bounds
    of every wait (``Timeouts``: connect, lock wait, call, bulk call,
    migration); the stores of one engine share them.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        url: str | URL | None = None,
        engine: Engine | None = None,
        auto_migrate: bool | None = None,
        sqlite_synchronous: str = "FULL",
        engine_options: dict[str, Any] | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        check_open_arguments(timeouts, engine_options)
        self.url, engine, self._owns_engine = store_engine(
            url,
            cache_dir,
            engine,
            synchronous=sqlite_synchronous,
            timeouts=timeouts or Timeouts(),
            options=engine_options,
        )
        self.engine: Engine = engine
        self.dialect: str = engine.dialect.name
        self.db_path: Path | None = sqlite_file_path(self.url)
        self.cache_dir: Path | None = self.db_path.parent if self.db_path else None
        self._executor = executor_for(engine, timeouts)
        self._record = self._executor.metrics.record  # what ``count_calls`` counts with
        self._sql = Statements.for_dialect(self.dialect)
        try:
            self._open_schema(auto_migrate)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------

    def _open_schema(self, auto_migrate: bool | None) -> None:
        open_schema(self._executor, self.url, auto_migrate, self.upgrade)
        self._counters = self._executor.read(counts.counters_present)

    def upgrade(self, revision: str = "head") -> None:
        """Run the migration chain up to ``revision`` on this store's database."""
        from uniqc_store.migrations import (
            runner as migrations,  # imports Alembic: only when a migration runs
        )

        with self._executor.translating(), self._executor.exclusive():  # Alembic's own
            self._executor.close()  # connections: the boundary's block, beside the units
            migrations.upgrade(self.engine, revision, timeouts=self._executor.timeouts)
        self._counters = self._executor.read(counts.counters_present)

    def schema_version(self) -> int:
        """The schema version the database is at."""
        return self._executor.read(database_version)

    @property
    def metrics(self) -> MetricsSnapshot:
        """What this store's calls cost and how they ended, since its engine's first store.

        A plain snapshot (``MetricsSnapshot``: calls, latency sums and buckets,
        errors by class per operation; retries; busy waits; the server pool's
        use), read in memory, no database access. The stores of one engine share
        one executor and so one set of figures: the pool, the retries and the
        waits are the engine's, and the calls are counted beside them.
        """
        return self._executor.metrics_snapshot()

    def session(self, **kwargs: Any) -> Session:
        """A read-only ``Session`` on the store's engine, for ad-hoc ORM queries.

        Safe beside the store from any thread, on every URL: each ORM statement
        runs in one read unit of the store's executor (``sessions.py``), so the
        Session holds no connection between statements and never holds the
        store's lock for long; loaded objects stay loaded
        (``expire_on_commit=False`` unless given). It refuses writes (flushes
        and ORM INSERT/UPDATE/DELETE): they go through the repository, which
        validates them and keeps moves atomic (see the README's "The ORM").
        Imports the ORM (``uniqc_store.models``) on first use.
        """
        from uniqc_store.db.sessions import read_only_session

        refuse_inside(self._executor, "session()")
        return read_only_session(self._executor, **kwargs)

    def reading(self, *, snapshot: bool = False) -> contextlib.AbstractContextManager[Connection]:
        """A read unit of the store's executor, as a ``with`` block yielding a ``Connection``.

        For reads the repository's methods do not cover, beside the store on any
        URL: the block holds the store's lock on SQLite (keep it short) and its
        errors are the store's. ``snapshot=True`` makes every statement of the
        block see one snapshot. Nothing in it may write.
        """
        return self._executor.reading(snapshot=snapshot)

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A write unit of the store's executor, as a ``with`` block yielding a ``Connection``.

        Committed when the block ends, rolled back if it raises, with the store's
        locking (``BEGIN IMMEDIATE`` on SQLite) and its errors. Not retried: a
        transient conflict raises ``DatabaseBusyError``; run the block again.
        Rows written here are not checked as ``save()`` checks them.
        """
        return self._executor.transaction()

    @contextlib.contextmanager
    def using(self, connection: Connection) -> Iterator[TaskStore]:
        """This store's calls inside a transaction your application owns, on ``connection``.

        ``with store.using(conn) as tx_store:`` yields a store with this one's API
        whose calls run on ``conn`` (yours, or ``session.connection()`` of your ORM
        ``Session``), so your rows and the store's commit or roll back together: the
        store never begins, commits, rolls back or retries there, and a call that
        returned is durable only when you commit. Each write runs in a SAVEPOINT
        (a call that raised left your transaction as it was); a deadlock or
        serialization failure is ``DatabaseBusyError``: retry your whole transaction.
        On SQLite pass the connection of ``store.transaction()``; a connection to
        another database is refused. Calls on this store itself are refused inside
        the block, and calls that commit as they go (``archive_expired``,
        ``purge_archived``, ``archive_many``, ``delete_many``, ``upgrade``, ``close``,
        ``session``) on the one it yields.
        See the README's "Inside your transaction".
        """
        with borrowing(self._executor, connection) as executor:
            bound = copy.copy(self)
            bound._executor = executor
            yield bound

    def close(self) -> None:
        """Release the connections (and the engine, if the store created it)."""
        self._executor.close()
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TaskStore(url={redact(self.url)!r})"

    # -- tasks -----------------------------------------------------------

    def save(self, task_info: TaskInfo) -> None:
        """Insert or update a task by id; ``submit_time`` of an existing row is kept.

        Stamps ``task_info.update_time`` with the time written to the row.
        """
        now = utc_now_iso()
        row = task_to_row(task_info, now)
        self._executor.write_one(self._sql.upsert_task, row)
        task_info.update_time = now

    def save_many(self, infos: Iterable[TaskInfo]) -> int:
        """Upsert many tasks in one transaction; all are validated before any is written."""
        items = builtins.list(infos)
        now = utc_now_iso()
        rows = [task_to_row(info, now) for info in items]
        if rows:
            with bulk():
                self._executor.write(lambda tx: staging.save_rows(tx, self._sql.upsert_task, rows))
        for info in items:
            info.update_time = now
        return len(rows)

    def get(self, task_id: str) -> TaskInfo | None:
        """The task with ``task_id``, or None."""
        params = {"task_id": lookup_key(task_id, "task_id")}
        row = self._executor.fetch_one(self._sql.get_task, params)
        return _decode_task(row) if row is not None else None

    def modify(self, task_id: str, change: Callable[[TaskInfo], object]) -> TaskInfo | None:
        """Read a task, let ``change`` edit it, write it back: one atomic step.

        The row stays locked while ``change`` runs (on SQLite, the write
        transaction), so concurrent modifications apply one after the other and
        none is lost, and a task deleted or archived meanwhile is not written
        back: None then, else the record as written. ``submit_time`` is kept,
        as ``save()`` keeps it. ``change`` must not call the store; if it raises,
        nothing is written; it runs again on a fresh read when the database asks
        for a retry (a deadlock), so it should only edit the record it is given.
        """
        key = lookup_key(task_id, "task_id")

        def read_change_write(tx: Transaction) -> TaskInfo | None:
            rows = tx.fetch(self._sql.lock_task, {"task_id": key})
            if not rows:
                return None
            info = _decode_task(rows[0])
            submitted = info.submit_time
            change(info)
            if info.task_id != key:
                raise ValueError(
                    f"modify() cannot change a task's id ({key!r} to {info.task_id!r})"
                )
            info.submit_time, info.archived_at = submitted, None  # what the row keeps
            if info.metadata is None:
                info.metadata = {}
            now = utc_now_iso()
            row = task_to_row(info, now)
            del row["task_id"], row["submit_time"]
            tx.run(self._sql.update_task, {**row, "key": key})
            info.update_time = now
            return info

        return self._executor.write(read_change_write)

    def list(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[TaskInfo]:
        """Tasks newest first by ``submit_time`` (ties: newest inserted first on SQLite)."""
        return self._list(tasks, _decode_task, status, backend, limit, offset)

    def _list(
        self,
        table: Table,
        decode: TaskDecoder,
        status: str | TaskStatus | None,
        backend: str | None,
        limit: int | None,
        offset: int | None,
    ) -> builtins.list[TaskInfo]:
        params = _filters(status, backend)
        if limit is not None:
            params["limit"] = row_count(limit, "limit")
        if offset is not None:
            params["offset"] = row_count(offset, "offset")
        stmt = listing(
            table,
            self.dialect,
            status is not None,
            backend is not None,
            limit is not None,
            offset is not None,
        )
        if (
            limit
            and status is not None
            and backend is not None
            and pages.reads_from_a_bound(self.dialect)
        ):
            work = functools.partial(pages.bounded_page, table=table, params=params)
            return [decode(row) for row in self._executor.read(work, snapshot=True)]
        with bulk() if limit is None else contextlib.nullcontext():
            rows = self._executor.fetch(stmt, params)
        return [decode(row) for row in rows]

    def iter_tasks(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[TaskInfo]:
        """Every matching task in id order, read a batch at a time (keyset pagination).

        Memory stays flat whatever the table's size; rows written during the
        walk may or may not be seen. The arguments are checked when it is called,
        before the first ``next()``.
        """
        return self._iter_table(tasks, _decode_task, status, backend, batch_size)

    def _iter_table(
        self,
        table: Table,
        decode: TaskDecoder,
        status: str | TaskStatus | None,
        backend: str | None,
        batch_size: int,
    ) -> Iterator[TaskInfo]:
        """Check the arguments now; the walk itself runs as the caller iterates."""
        params = walk_params(status, backend, batch_size)
        has = (status is not None, backend is not None)
        first, after = keyset_page(table, *has, True), keyset_page(table, *has, False)
        return self._walk(first, after, params, decode)

    def _walk(
        self, first: Executable, after: Executable, params: dict[str, Any], decode: TaskDecoder
    ) -> Iterator[TaskInfo]:
        rows = self._executor.fetch(first, params)
        while rows:
            yield from (decode(row) for row in rows)
            params["after"] = rows[-1][0]
            rows = self._executor.fetch(after, params)

    def count(self, *, status: str | TaskStatus | None = None, backend: str | None = None) -> int:
        """How many tasks match."""
        return self._count(tasks, status, backend)

    def tally(
        self,
        *,
        archived: bool = False,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
    ) -> counts.Tally:
        """Tasks (``archived``: archived tasks) per ``(status, backend)``, in one read:
        ``total()``, ``by_status()``, ``by_backend()``. Every count of the package is
        one (``repository/counts.py``): trigger-kept counters from 0007 (SQLite) / 0009 (servers),
        an index scan where there are none."""
        table = archived_tasks if flag(archived, "archived") else tasks
        return self._tally(table, status, backend)

    def _tally(
        self, table: Table, status: str | TaskStatus | None, backend: str | None
    ) -> counts.Tally:
        params = _filters(status, backend)
        has = (status is not None, backend is not None)
        try:
            rows = self._executor.fetch(counts.tally_statement(table, self._counters, *has), params)
        except StoreError as exc:
            if not self._counters or not caused_by(exc, OperationalError, ProgrammingError):
                raise
            # the database lost its counters since we looked (downgraded elsewhere)
            self._counters = self._executor.read(counts.counters_present)
            rows = self._executor.fetch(counts.tally_statement(table, self._counters, *has), params)
        return counts.Tally.of(rows)

    def _count(self, table: Table, status: str | TaskStatus | None, backend: str | None) -> int:
        return self._tally(table, status, backend).total()

    def delete(self, task_id: str) -> bool:
        """Delete a task and its shards; True if it existed."""
        params = {"task_id": lookup_key(task_id, "task_id")}
        return self._executor.write_one(self._sql.delete_task, params) > 0

    def clear_completed(self, terminal_statuses: Iterable[str] = TERMINAL_STATUSES) -> int:
        """Delete every task whose status is one of ``terminal_statuses``; return how many."""
        statuses = sorted({normalize_status(s) for s in terminal_statuses})
        if not statuses:
            return 0
        with bulk():
            return self._executor.write_one(self._sql.delete_in_statuses, {"statuses": statuses})

    def clear_all(self) -> None:
        """Remove every task, shard and archived row, in one transaction; the schema stays.

        The reference deleted its SQLite file; other processes holding it open
        then wrote into the deleted file and lost those writes. Emptying the
        tables gives the same outcome (an empty store at head) and every
        process sees it on its next call.
        """
        with bulk():
            self._executor.write(archive.delete_everything, direct_ok=False)

    # -- shards ----------------------------------------------------------

    def save_shard(self, shard: TaskShard) -> None:
        """Insert or update a shard (key: task id + index); its parent task must exist."""
        now = utc_now_iso()
        row = shard_to_row(shard, now)
        self._write_shards([row])
        shard.update_time = now

    def save_shards(self, shards: Iterable[TaskShard]) -> int:
        """Upsert many shards in one transaction (all or nothing)."""
        items = builtins.list(shards)
        now = utc_now_iso()
        rows = [shard_to_row(shard, now) for shard in items]
        if rows:
            with bulk():
                self._write_shards(rows)
        for shard in items:
            shard.update_time = now
        return len(rows)

    def _write_shards(self, rows: builtins.list[dict[str, Any]]) -> None:
        """Upsert shard rows; a missing parent is ``MissingParentTaskError``.

        A parent that is moving (restored between the failed insert and the
        check) is written again, a bounded number of times.
        """
        for _attempt in range(PARENT_RETRIES):
            try:
                if len(rows) == 1:
                    self._executor.write_one(self._sql.upsert_shard, rows[0])
                else:
                    self._executor.write(lambda tx: tx.run(self._sql.upsert_shard, rows))
                return
            except StoreError as exc:
                if not caused_by(exc, IntegrityError):
                    raise
                parents = sorted({row["uniqc_task_id"] for row in rows})
                found = self._executor.fetch(self._sql.parents_among, {"ids": parents})
                missing = sorted(set(parents) - {row[0] for row in found})
                if missing:
                    raise MissingParentTaskError(
                        f"no task {', '.join(map(repr, missing))} in the store: save the parent "
                        "TaskInfo before its shards (nothing was written)"
                    ) from exc.__cause__
                self._executor.metrics.retried(RETRY_PARENT_MOVED)
        raise MissingParentTaskError(
            f"the parent task of these shards kept moving to and from the archive while they "
            f"were written ({PARENT_RETRIES} attempts); nothing was written, try again"
        )

    def get_shards(self, uniqc_task_id: str) -> builtins.list[TaskShard]:
        """The task's shards, by index."""
        params = {"task_id": lookup_key(uniqc_task_id, "uniqc_task_id")}
        return [row_to_shard(row) for row in self._executor.fetch(self._sql.get_shards, params)]

    def get_shard_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> TaskShard | None:
        """A shard by the id its platform gave it (narrowed to ``backend`` if given)."""
        params = _platform_filters(platform_task_id, backend)
        sql = self._sql
        stmt = sql.shard_by_platform if backend is None else sql.shard_by_platform_backend
        row = self._executor.fetch_one(stmt, params)
        return row_to_shard(row) if row is not None else None

    def find_uniqc_id_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> str | None:
        """The uniqc task id owning a platform task id, or None."""
        params = _platform_filters(platform_task_id, backend)
        sql = self._sql
        stmt = sql.parent_by_platform if backend is None else sql.parent_by_platform_backend
        row = self._executor.fetch_one(stmt, params)
        return str(row[0]) if row is not None else None

    def delete_shards(self, uniqc_task_id: str) -> int:
        """Delete a task's shards; return how many."""
        params = {"task_id": lookup_key(uniqc_task_id, "uniqc_task_id")}
        return self._executor.write_one(self._sql.delete_shards, params)

    @staticmethod
    def aggregate_status(shards: Iterable[TaskShard]) -> str:
        """A parent's status from its shards' (the reference's rules).

        No shards: pending; any non-terminal: running; all success: success;
        any failed: failed; otherwise cancelled. Anything but an iterable of
        shards (a task id string, a number, items without a ``status``) is a
        TypeError, as every bad argument is.
        """
        if isinstance(shards, (str, bytes)) or not isinstance(shards, Iterable):
            raise TypeError(
                f"shards must be an iterable of TaskShard, not {type(shards).__name__}"
                " (get_shards(task_id) gives a task's shards)"
            )
        statuses = set()
        for shard in shards:
            if not hasattr(shard, "status"):
                raise TypeError(f"shards must hold TaskShard objects, not {type(shard).__name__}")
            statuses.add(normalize_status(shard.status))
        if not statuses:
            return TaskStatus.PENDING.value
        if not statuses <= set(TERMINAL_STATUSES):
            return TaskStatus.RUNNING.value
        if statuses == {TaskStatus.SUCCESS.value}:
            return TaskStatus.SUCCESS.value
        if TaskStatus.FAILED.value in statuses:
            return TaskStatus.FAILED.value
        return TaskStatus.CANCELLED.value

    # -- archive ---------------------------------------------------------

    def archive_task(self, task_id: str) -> bool:
        """Move a task and its shards into the archive; False if there is no such task."""
        task_id = lookup_key(task_id, "task_id")
        now = utc_now_iso()
        return self._executor.write(lambda tx: archive.archive_one(tx, task_id, now))

    def restore_task(self, task_id: str) -> bool:
        """Move an archived task and its shards back; False if it is not archived."""
        task_id = lookup_key(task_id, "task_id")
        return self._executor.write(lambda tx: archive.restore_one(tx, task_id))

    def get_archived(self, task_id: str) -> TaskInfo | None:
        """The archived task with ``task_id`` (``archived_at`` set), or None."""
        params = {"task_id": lookup_key(task_id, "task_id")}
        row = self._executor.fetch_one(self._sql.get_archived, params)
        return _decode_archived(row) if row is not None else None

    def get_archived_shards(self, task_id: str) -> builtins.list[TaskShard]:
        """The shards of an archived task, by index."""
        params = {"task_id": lookup_key(task_id, "task_id")}
        rows = self._executor.fetch(self._sql.get_archived_shards, params)
        return [row_to_shard(row) for row in rows]

    def list_archived(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> builtins.list[TaskInfo]:
        """Archived tasks, newest ``submit_time`` first."""
        return self._list(archived_tasks, _decode_archived, status, backend, limit, offset)

    def iter_archived(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[TaskInfo]:
        """Every matching archived task in id order, a batch at a time (as ``iter_tasks``)."""
        return self._iter_table(archived_tasks, _decode_archived, status, backend, batch_size)

    def count_archived(
        self, *, status: str | TaskStatus | None = None, backend: str | None = None
    ) -> int:
        """How many archived tasks match."""
        return self._count(archived_tasks, status, backend)

    def delete_archived(self, task_id: str) -> bool:
        """Delete an archived task and its archived shards; True if it existed."""
        task_id = lookup_key(task_id, "task_id")
        return self._executor.write(lambda tx: archive.delete_archived(tx, task_id))

    def archive_expired(self, hours: float = 72, terminal_only: bool = True) -> dict[str, Any]:
        """Archive every task last updated more than ``hours`` ago, in atomic chunks.

        Returns ``archived`` (ids, in id order), ``count``, ``hours``,
        ``terminal_only``, ``skipped_running`` (non-terminal ids left alone when
        ``terminal_only``) and ``skipped_conflicts`` (ids already archived).

        What may have expired is read in one range of an index
        (``archive.expiry_candidates``), and those tasks move in id order,
        ``archive.CHUNK`` (100) at a time, each chunk in one transaction of its own
        (locked, checked again, copied, deleted): no transaction grows with the table.
        The exception to "every call is one atomic unit": an error part-way is
        ``PartialRunError``, whose ``report`` is this dict for the chunks already
        committed (the failing chunk moved nothing); an error in the first chunk is
        raised as it is.
        """
        refuse_inside(self._executor, "archive_expired()")
        cutoff = archive.cutoff_for(hours)  # validates before anything runs
        terminal_only = flag(terminal_only, "terminal_only")
        now = utc_now_iso()
        outcome = archive.ExpiryOutcome()

        def report() -> dict[str, Any]:
            return {
                "archived": builtins.list(outcome.archived),
                "count": len(outcome.archived),
                "hours": hours,
                "terminal_only": terminal_only,
                "skipped_running": builtins.list(outcome.skipped_running),
                "skipped_conflicts": builtins.list(outcome.skipped_conflicts),
            }

        def chunk(ids: builtins.list[str]) -> None:
            with self._giving_way():
                moved, taken = self._executor.write(
                    lambda tx: archive.archive_chunk(tx, ids, cutoff, terminal_only, now),
                    direct_ok=False,
                )
            outcome.archived += moved
            outcome.skipped_conflicts += taken

        with self._chunked("archive_expired", lambda: bool(outcome.archived), report):
            if terminal_only:
                outcome.skipped_running = self._executor.read(archive.not_finished)
            running = outcome.skipped_running
            found = self._executor.read(
                lambda conn: archive.expiry_candidates(conn, cutoff, running)
            )
            for start in range(0, len(found), archive.CHUNK):
                chunk(found[start : start + archive.CHUNK])
        return report()

    def purge_archived(
        self,
        *,
        older_than_hours: float,
        keep_last: int = 0,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> archive.PurgeReport:
        """Delete archived tasks archived more than ``older_than_hours`` ago, with their
        archived shards, for good; the newest ``keep_last`` archived tasks always stay.

        Age is ``archived_at``; ``keep_last`` counts over every archived task (newest
        by ``archived_at``, then id), read when the call starts. The archive is
        walked in id order, ``batch_size`` rows per short read, and each page's due
        tasks are deleted in one transaction of their own (locked and checked
        again first). ``dry_run=True`` deletes nothing and reports what is due.
        ``progress(n)`` is called after each page with the rows it examined.
        Like ``archive_expired``, a sequence of atomic batches: an error part-way
        is ``PartialRunError`` whose ``report`` counts the batches committed.
        """
        refuse_inside(self._executor, "purge_archived()")
        cutoff = archive.cutoff_for(older_than_hours, "older_than_hours")
        keep = row_count(keep_last, "keep_last")
        size = int_in_range(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        dry = flag(dry_run, "dry_run")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable or None, not {type(progress).__name__}")
        report = archive.PurgeReport(float(older_than_hours), keep, dry)
        with self._chunked("purge_archived", lambda: report.tasks > 0, lambda: report):
            boundary: archive.Boundary = None
            if keep:
                found = self._executor.fetch_one(archive.KEEP_BOUNDARY, {"offset": keep - 1})
                if found is None:  # no more than keep_last archived tasks: all stay
                    return report
                boundary = (str(found[0]), str(found[1]))
            for rows in self._pages(archived_tasks, archive.PURGE_SCAN, size):
                due = archive.purge_candidates(rows, cutoff, boundary)
                if due:
                    report.add(*self._purge_page(due, cutoff, boundary, dry))
                if progress is not None:
                    progress(len(rows))
        return report

    def _purge_page(
        self, due: builtins.list[str], cutoff: Any, boundary: archive.Boundary, dry: bool
    ) -> tuple[builtins.list[str], int]:
        if dry:
            row = self._executor.fetch_one(archive.COUNT_ARCHIVED_SHARDS, {"ids": due})
            return due, int(row[0]) if row is not None else 0
        with self._giving_way():
            return self._executor.write(
                lambda tx: archive.purge_batch(tx, due, cutoff, boundary), direct_ok=False
            )

    def _pages(
        self, table: Table, columns: tuple[str, ...], size: int
    ) -> Iterator[builtins.list[Any]]:
        """Pages of ``columns`` of ``table`` in id order, each its own short read (no
        snapshot held across pages: a row moved meanwhile may be seen or not)."""
        params: dict[str, Any] = {"limit": size}
        rows = self._executor.fetch(scan_page(table, columns, True), params)
        while rows:
            yield rows
            if len(rows) < size:
                return
            params["after"] = rows[-1][0]
            rows = self._executor.fetch(scan_page(table, columns, False), params)

    @contextlib.contextmanager
    def _giving_way(self) -> Iterator[None]:
        """After a chunk's transaction on SQLite, leave the write lock free for as long
        as the chunk held it (at most ``GIVE_WAY_MAX_S``).

        SQLite's busy handler polls (after 1, 2, 5, 10, 15, 20, 25 ... ms) instead of
        being woken, so a writer in another connection that waits while a chunk
        runs would keep missing the moment between two chunks and wait for many;
        with the lock free half the time, one of its first polls finds it free.
        The servers queue lock waiters fairly: nothing is needed there.
        """
        started = time.monotonic()
        yield
        if self.dialect == "sqlite":
            time.sleep(min(time.monotonic() - started, GIVE_WAY_MAX_S))

    @contextlib.contextmanager
    def _chunked(
        self, name: str, committed: Callable[[], bool], report: Callable[[], object]
    ) -> Iterator[None]:
        """Run a call made of atomic chunks: an error once a chunk has committed is a
        ``PartialRunError`` carrying the report of what is committed.

        Each chunk is an ordinary call's unit (its deadline ``call_seconds``), not a
        bulk one: chunks are small. On SQLite the WAL is checkpointed once, at the
        end, not after every chunk (SQLite's own checkpoint every 1,000 pages bounds
        the file meanwhile)."""
        try:
            yield
            self._executor.checkpoint()
        except StoreError as exc:
            if not committed():
                raise
            raise PartialRunError(
                f"{name} stopped part-way: the chunks before this error are committed "
                f"(see .report), the failing one changed nothing; run it again to go on. "
                f"The error: {exc}",
                report=report(),
            ) from exc

    def _write(self, work: Callable[[Transaction], T], *, direct_ok: bool = True) -> T:
        """One unit of work in a transaction, for the package's own tools (export/import)."""
        return self._executor.write(work, direct_ok=direct_ok)

    def _locate(self, task_id: str) -> tuple[TaskInfo, builtins.list[TaskShard], bool] | None:
        """The live task with ``task_id``, else the archived one, with its shards and
        whether it is archived: all read in one snapshot, so a task moving meanwhile
        is found once, with its own shards. None when it is in neither table."""
        params = {"task_id": lookup_key(task_id, "task_id")}
        sql = self._sql

        def read(conn: Connection) -> tuple[TaskInfo, builtins.list[TaskShard], bool] | None:
            for get, shards, decode, archived in (
                (sql.get_task, sql.get_shards, _decode_task, False),
                (sql.get_archived, sql.get_archived_shards, _decode_archived, True),
            ):
                row = conn.execute(get, params).first()
                if row is not None:
                    found = [row_to_shard(r) for r in conn.execute(shards, params)]
                    return decode(row), found, archived
            return None

        return self._executor.read(read, snapshot=True)

    def _read(self, work: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """One read unit (retried on servers), for the package's own tools (dashboard, CLI)."""
        return self._executor.read(work, snapshot=snapshot)

    def expired_task_ids(self, hours: float = 72, terminal_only: bool = True) -> builtins.list[str]:
        """What ``archive_expired`` would archive now (ids), without moving anything."""
        cutoff = archive.cutoff_for(hours)
        terminal_only = flag(terminal_only, "terminal_only")
        with bulk():
            return self._executor.read(
                lambda conn: archive.expired_ids(conn, cutoff, terminal_only)
            )

    # -- deep pages and calls on many ids (keyset pages: pages.py; chunks: by_ids.py) --

    def list_page(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """One page of live tasks, newest ``submit_time`` first, ties by ``task_id``
        descending (on every engine), and the cursor of the next page.

        ``cursor=None`` gives the first page; pass a page's ``next_cursor`` for the
        next one (None: no row followed it). Each page is one indexed read that starts
        where the last one ended, so a deep page costs what the first does (unlike
        ``list(offset=...)``), and a walk returns every task that exists from its
        first page to its last exactly once, whatever is saved or deleted meanwhile.
        The cursor is an opaque URL-safe string; one that this store did not give
        (edited, truncated, made for the archive) is a ``ValueError``. ``limit``:
        from 1 to ``MAX_PAGE_SIZE``.
        """
        return self._list_page(tasks, _decode_task, status, backend, limit, cursor)

    def list_archived_page(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """One page of archived tasks, as ``list_page`` pages the live ones (its
        cursors are the archive's: a live-task cursor is a ``ValueError`` here)."""
        return self._list_page(archived_tasks, _decode_archived, status, backend, limit, cursor)

    def _list_page(
        self,
        table: Table,
        decode: TaskDecoder,
        status: str | TaskStatus | None,
        backend: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        params = _filters(status, backend)
        size = int_in_range(limit, "limit", 1, MAX_PAGE_SIZE)
        if cursor is not None:
            params["submit_time"], params["task_id"] = pages.decode_cursor(
                cursor, table, self.dialect
            )
        params["limit"] = size + 1  # one row more: whether a next page exists
        stmt = pages.page_query(table, status is not None, backend is not None, cursor is not None)
        rows = self._executor.fetch(stmt, params)
        found = [decode(row) for row in rows[:size]]
        if len(rows) <= size:
            return Page(found, None)
        submitted, key = pages.key_positions(table)
        last = rows[size - 1]  # as stored (decoded, it read fine): the position compares so
        return Page(found, pages.encode_cursor(table, last[submitted], last[key]))

    def archive_many(self, task_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Archive many live tasks (with their shards): ``archive_task`` for each id,
        set-based, ``archive.CHUNK`` (100) distinct ids per transaction.

        Returns ``archived`` (each id moved, once, in the order given), ``missing``
        (no such live task, or a repeat of an id moved earlier in the call) and
        ``conflicts`` (live and already archived: not moved). Every id is checked
        before any SQL. Like ``archive_expired``, a sequence of atomic chunks: an
        error part-way is ``PartialRunError`` whose ``report`` is this dict for the
        chunks committed; an error in the first chunk is raised as it is.
        """
        refuse_inside(self._executor, "archive_many()")
        ids = lookup_keys(task_ids, "task_ids")
        now = utc_now_iso()
        done: set[str] = set()
        moved: set[str] = set()
        conflicts: set[str] = set()

        def report() -> dict[str, builtins.list[str]]:
            return by_ids.archive_report(ids, done, moved, conflicts)

        with self._chunked("archive_many", lambda: bool(done), report):
            for chunk in by_ids.chunks(ids, archive.CHUNK):
                with self._giving_way():
                    taken, clashes = self._archive_chunk(chunk, now)
                moved.update(taken)
                conflicts.update(clashes)
                done.update(chunk)
        return report()

    def _archive_chunk(
        self, chunk: builtins.list[str], now: str
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """One chunk of ``archive_many``: set-based; if another program wrote an archived
        copy of one of its ids meanwhile (the chunk then moved nothing), id by id."""
        try:
            return self._executor.write(
                lambda tx: archive.archive_listed(tx, chunk, now), direct_ok=False
            )
        except TaskConflictError:
            outcomes = {task_id: self._archive_alone(task_id, now) for task_id in chunk}
            taken = [task_id for task_id, moved in outcomes.items() if moved]
            return taken, [task_id for task_id, moved in outcomes.items() if moved is None]

    def _archive_alone(self, task_id: str, now: str) -> bool | None:
        """``archive_task`` of one id: moved, not a live task (False), or a conflict (None)."""
        try:
            return self._executor.write(lambda tx: archive.archive_one(tx, task_id, now))
        except TaskConflictError:
            return None

    def delete_many(self, task_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Delete many live tasks (their shards go with them): ``delete`` for each id,
        set-based, ``archive.CHUNK`` (100) distinct ids per transaction.

        Returns ``deleted`` (each id deleted, once, in the order given) and
        ``missing`` (every appearance of an id that was no live task). Every id is
        checked before any SQL; chunks and errors as ``archive_many``.
        """
        refuse_inside(self._executor, "delete_many()")
        ids = lookup_keys(task_ids, "task_ids")
        done: set[str] = set()
        deleted: set[str] = set()

        def report() -> dict[str, builtins.list[str]]:
            return by_ids.delete_report(ids, done, deleted)

        with self._chunked("delete_many", lambda: bool(done), report):
            for chunk in by_ids.chunks(ids, archive.CHUNK):
                deleted.update(self._delete_chunk(chunk))
                done.update(chunk)
        return report()

    def _delete_chunk(self, chunk: builtins.list[str]) -> builtins.list[str]:
        with self._giving_way():
            return self._executor.write(lambda tx: by_ids.delete_listed(tx, chunk), direct_ok=False)


#: How often a shard write is tried while its parent moves between the tables.
PARENT_RETRIES = 3
#: The longest pause between two chunks of a retention call on SQLite (``_giving_way``).
GIVE_WAY_MAX_S = 0.05

_decode_task = TaskDecoder([c.name for c in tasks.columns])
_decode_archived = TaskDecoder([c.name for c in archived_tasks.columns])


def check_open_arguments(timeouts: Any, engine_options: Any) -> None:
    """The checks of a store's ``timeouts`` and ``engine_options`` (sync and async)."""
    if timeouts is not None and not isinstance(timeouts, Timeouts):
        raise TypeError(f"timeouts must be a uniqc_store.Timeouts, not {type(timeouts).__name__}")
    if engine_options is not None and not isinstance(engine_options, dict):
        raise TypeError(
            f"engine_options must be a dict of create_engine arguments, not "
            f"{type(engine_options).__name__}"
        )


def walk_params(
    status: str | TaskStatus | None, backend: str | None, batch_size: int
) -> dict[str, Any]:
    """The checked parameters of an ``iter_tasks`` / ``iter_archived`` walk."""
    if row_count(batch_size, "batch_size") < 1:
        raise ValueError("batch_size must be at least 1")
    return {**_filters(status, backend), "limit": batch_size}


def _filters(status: str | TaskStatus | None, backend: str | None) -> dict[str, Any]:
    """Checked ``status`` / ``backend`` filter parameters (None: no filter)."""
    return {
        "status": None if status is None else normalize_status(status),
        "backend": optional_lookup_key(backend, "backend"),
    }


def _platform_filters(platform_task_id: str, backend: str | None) -> dict[str, Any]:
    return {
        "platform_task_id": lookup_key(platform_task_id, "platform_task_id"),
        "backend": optional_lookup_key(backend, "backend"),
    }
