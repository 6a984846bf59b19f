"""``TaskStore``: the reference store's API on SQLAlchemy Core.

Every public method owns its transaction; helpers take a ``Transaction``
and never commit. The statements are built once (``statements.py``).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, Table, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from . import archive, versions
from .codec import TaskDecoder, check_int, row_to_shard, shard_to_row, task_to_row
from .connections import (
    ConnectionManager,
    Transaction,
    translate_error,
)
from .engine import (
    create_store_engine,
    install_sqlite_recipe,
    redact,
    resolve_url,
    sqlite_file_path,
)
from .errors import (
    DatabaseUnavailableError,
    ForeignDatabaseError,
    MissingParentTaskError,
    SchemaOutOfDateError,
)
from .models import archived_tasks, tasks
from .records import (
    APPLICATION_ID,
    CURRENT_SCHEMA_VERSION,
    TERMINAL_STATUSES,
    TaskInfo,
    TaskShard,
    TaskStatus,
    normalize_status,
    utc_now_iso,
)
from .sqlite_files import check_sqlite_file
from .statements import Statements, counting, keyset_page, listing

T = TypeVar("T")


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
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        url: str | URL | None = None,
        engine: Engine | None = None,
        auto_migrate: bool | None = None,
        sqlite_synchronous: str = "FULL",
    ) -> None:
        if engine is not None:
            self.url = engine.url
            self._owns_engine = False
            if engine.dialect.name == "sqlite":
                path = sqlite_file_path(engine.url)
                if path is not None:  # before anything connects: a foreign file stays as it is
                    check_sqlite_file(path)
                install_sqlite_recipe(engine, wal=path is not None)
        else:
            self.url = resolve_url(url, cache_dir)
            engine = create_store_engine(self.url, synchronous=sqlite_synchronous)
            self._owns_engine = True
        self.engine: Engine = engine
        self.dialect: str = engine.dialect.name
        self.db_path: Path | None = sqlite_file_path(self.url)
        self.cache_dir: Path | None = self.db_path.parent if self.db_path else None
        self._conns = ConnectionManager(engine)
        self._sql = Statements.for_dialect(self.dialect)
        try:
            self._open_schema(auto_migrate)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------

    def _open_schema(self, auto_migrate: bool | None) -> None:
        try:
            with self._conns.reading() as conn:
                self._check_application_id(conn)
                version = versions.database_version(conn)
                # earlier versions kept our row in alembic_version: upgrade moves it
                moved = self.dialect == "sqlite" and bool(versions.legacy_revisions(conn))
        except OperationalError as exc:
            raise DatabaseUnavailableError(
                f"cannot open the task database at {redact(self.url)}: {exc.orig}"
            ) from None
        if version != CURRENT_SCHEMA_VERSION or moved:
            if not (self.dialect == "sqlite" if auto_migrate is None else auto_migrate):
                raise SchemaOutOfDateError(
                    f"the task database at {redact(self.url)} is at schema version {version}, "
                    f"this uniqc-store needs {CURRENT_SCHEMA_VERSION}; run: "
                    f"{versions.upgrade_command(self.url)}"
                )
            self.upgrade()
        self._conns.ensure_statistics()

    def _check_application_id(self, conn: Connection) -> None:
        if self.dialect != "sqlite":
            return
        found = int(conn.exec_driver_sql("PRAGMA application_id").scalar_one())
        if found not in (0, APPLICATION_ID):
            raise ForeignDatabaseError(
                f"the SQLite database at {redact(self.url)} has application_id 0x{found:08x}, "
                "not UNIC: it belongs to another application and was left untouched"
            )

    def upgrade(self, revision: str = "head") -> None:
        """Run the migration chain up to ``revision`` on this store's database."""
        from . import migrations  # imports Alembic: only when a migration runs

        with self._conns.lock:
            self._conns.close()
            migrations.upgrade(self.engine, revision)

    def schema_version(self) -> int:
        """The schema version the database is at."""
        with self._conns.reading() as conn:
            return versions.database_version(conn)

    def close(self) -> None:
        """Release the connections (and the engine, if the store created it)."""
        self._conns.close()
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
        self._write_one(self._sql.upsert_task, row)
        task_info.update_time = now

    def save_many(self, infos: Iterable[TaskInfo]) -> int:
        """Upsert many tasks in one transaction; all are validated before any is written."""
        items = builtins.list(infos)
        now = utc_now_iso()
        rows = [task_to_row(info, now) for info in items]
        if rows:
            self._write(lambda tx: tx.run(self._sql.upsert_task, rows))
        for info in items:
            info.update_time = now
        return len(rows)

    def get(self, task_id: str) -> TaskInfo | None:
        """The task with ``task_id``, or None."""
        row = self._conns.fetch_one(self._sql.get_task, {"task_id": task_id})
        return _decode_task(row) if row is not None else None

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
        params: dict[str, Any] = {"status": _status_or_none(status), "backend": backend}
        if limit is not None:
            params["limit"] = _non_negative(limit, "limit")
        if offset is not None:
            params["offset"] = _non_negative(offset, "offset")
        stmt = listing(
            table,
            self.dialect,
            status is not None,
            backend is not None,
            limit is not None,
            offset is not None,
        )
        return [decode(row) for row in self._conns.fetch(stmt, params)]

    def iter_tasks(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[TaskInfo]:
        """Every matching task in id order, read a batch at a time (keyset pagination).

        Memory stays flat whatever the table's size; rows written during the
        walk may or may not be seen.
        """
        yield from self._iter_table(tasks, _decode_task, status, backend, batch_size)

    def _iter_table(
        self,
        table: Table,
        decode: TaskDecoder,
        status: str | TaskStatus | None,
        backend: str | None,
        batch_size: int,
    ) -> Iterator[TaskInfo]:
        if _non_negative(batch_size, "batch_size") < 1:
            raise ValueError("batch_size must be at least 1")
        params: dict[str, Any] = {
            "status": _status_or_none(status),
            "backend": backend,
            "limit": batch_size,
        }
        has = (status is not None, backend is not None)
        first, after = keyset_page(table, *has, True), keyset_page(table, *has, False)
        rows = self._conns.fetch(first, params)
        while rows:
            yield from (decode(row) for row in rows)
            params["after"] = rows[-1][0]
            rows = self._conns.fetch(after, params)

    def count(self, *, status: str | TaskStatus | None = None, backend: str | None = None) -> int:
        """How many tasks match."""
        return self._count(tasks, status, backend)

    def _count(self, table: Table, status: str | TaskStatus | None, backend: str | None) -> int:
        stmt = counting(table, status is not None, backend is not None)
        params = {"status": _status_or_none(status), "backend": backend}
        row = self._conns.fetch_one(stmt, params)
        return int(row[0]) if row is not None else 0

    def delete(self, task_id: str) -> bool:
        """Delete a task and its shards; True if it existed."""
        return self._write_one(self._sql.delete_task, {"task_id": task_id}) > 0

    def clear_completed(self, terminal_statuses: Iterable[str] = TERMINAL_STATUSES) -> int:
        """Delete every task whose status is one of ``terminal_statuses``; return how many."""
        statuses = [normalize_status(s) for s in terminal_statuses]
        if not statuses:
            return 0
        stmt = tasks.delete().where(tasks.c.status.in_(statuses))
        return self._write_one(stmt, {})

    def clear_all(self) -> None:
        """Remove everything: a SQLite file is deleted (with -wal/-shm) and recreated
        empty at head; on a server (or in memory) every row of the four tables goes."""
        if self.db_path is None or not self._owns_engine:
            self._write(archive.delete_everything)
            return
        with self._conns.lock:
            self._conns.close()
            self.engine.dispose()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
            self.upgrade()

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
            self._write_shards(rows)
        for shard in items:
            shard.update_time = now
        return len(rows)

    def _write_shards(self, rows: builtins.list[dict[str, Any]]) -> None:
        try:
            if len(rows) == 1:
                self._write_one(self._sql.upsert_shard, rows[0])
            else:
                self._write(lambda tx: tx.run(self._sql.upsert_shard, rows))
        except IntegrityError:
            parents = sorted({row["uniqc_task_id"] for row in rows})
            known = select(tasks.c.task_id).where(tasks.c.task_id.in_(parents))
            found = {row[0] for row in self._conns.fetch(known)}
            missing = [p for p in parents if p not in found]
            if not missing:
                raise
            raise MissingParentTaskError(
                f"no task {', '.join(map(repr, missing))} in the store: save the parent "
                "TaskInfo before its shards (nothing was written)"
            ) from None

    def get_shards(self, uniqc_task_id: str) -> builtins.list[TaskShard]:
        """The task's shards, by index."""
        rows = self._conns.fetch(self._sql.get_shards, {"task_id": uniqc_task_id})
        return [row_to_shard(row) for row in rows]

    def get_shard_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> TaskShard | None:
        """A shard by the id its platform gave it (narrowed to ``backend`` if given)."""
        params = {"platform_task_id": platform_task_id, "backend": backend}
        stmt = (
            self._sql.shard_by_platform if backend is None else self._sql.shard_by_platform_backend
        )
        row = self._conns.fetch_one(stmt, params)
        return row_to_shard(row) if row is not None else None

    def find_uniqc_id_by_platform_id(
        self, platform_task_id: str, *, backend: str | None = None
    ) -> str | None:
        """The uniqc task id owning a platform task id, or None."""
        sql = self._sql
        stmt = sql.parent_by_platform if backend is None else sql.parent_by_platform_backend
        row = self._conns.fetch_one(
            stmt, {"platform_task_id": platform_task_id, "backend": backend}
        )
        return str(row[0]) if row is not None else None

    def delete_shards(self, uniqc_task_id: str) -> int:
        """Delete a task's shards; return how many."""
        return self._write_one(self._sql.delete_shards, {"task_id": uniqc_task_id})

    @staticmethod
    def aggregate_status(shards: Iterable[TaskShard]) -> str:
        """A parent's status from its shards' (the reference's rules).

        No shards: pending; any non-terminal: running; all success: success;
        any failed: failed; otherwise cancelled.
        """
        statuses = {normalize_status(s.status) for s in shards}
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
        now = utc_now_iso()
        return self._write(lambda tx: archive.archive_one(tx, task_id, now))

    def restore_task(self, task_id: str) -> bool:
        """Move an archived task and its shards back; False if it is not archived."""
        return self._write(lambda tx: archive.restore_one(tx, task_id))

    def get_archived(self, task_id: str) -> TaskInfo | None:
        """The archived task with ``task_id`` (``archived_at`` set), or None."""
        row = self._conns.fetch_one(self._sql.get_archived, {"task_id": task_id})
        return _decode_archived(row) if row is not None else None

    def get_archived_shards(self, task_id: str) -> builtins.list[TaskShard]:
        """The shards of an archived task, by index."""
        rows = self._conns.fetch(self._sql.get_archived_shards, {"task_id": task_id})
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
        """Every matching archived task in id order, a batch at a time."""
        yield from self._iter_table(archived_tasks, _decode_archived, status, backend, batch_size)

    def count_archived(
        self, *, status: str | TaskStatus | None = None, backend: str | None = None
    ) -> int:
        """How many archived tasks match."""
        return self._count(archived_tasks, status, backend)

    def delete_archived(self, task_id: str) -> bool:
        """Delete an archived task and its archived shards; True if it existed."""
        return self._write(lambda tx: archive.delete_archived(tx, task_id))

    def archive_expired(self, hours: float = 72, terminal_only: bool = True) -> dict[str, Any]:
        """Archive every task last updated more than ``hours`` ago, in one transaction.

        Returns ``archived`` (ids), ``count``, ``hours``, ``terminal_only``,
        ``skipped_running`` (non-terminal ids left alone when
        ``terminal_only``) and ``skipped_conflicts`` (ids already archived).
        """
        archive.cutoff_for(hours)  # validates before anything runs
        now = utc_now_iso()
        outcome = self._write(lambda tx: archive.archive_expired(tx, hours, terminal_only, now))
        return {
            "archived": outcome.archived,
            "count": len(outcome.archived),
            "hours": hours,
            "terminal_only": terminal_only,
            "skipped_running": outcome.skipped_running,
            "skipped_conflicts": outcome.skipped_conflicts,
        }

    def expired_task_ids(self, hours: float = 72, terminal_only: bool = True) -> builtins.list[str]:
        """What ``archive_expired`` would archive now (ids), without moving anything."""
        cutoff = archive.cutoff_for(hours)
        with self._conns.reading() as conn:
            return archive.expired_ids(conn, cutoff, terminal_only)

    # -- plumbing --------------------------------------------------------

    def _write(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one transaction, with the store's errors."""
        return self._translating(lambda: self._conns.write(work))

    def _write_one(self, stmt: Any, params: dict[str, Any]) -> int:
        """Run one DML statement as its own transaction, with the store's errors."""
        return self._translating(lambda: self._conns.write_one(stmt, params))

    def _translating(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except DBAPIError as exc:
            translated = translate_error(exc, self.dialect)
            if translated is exc:
                raise
            raise translated from exc
        except UnicodeEncodeError as exc:
            raise ValueError(f"text that is not valid Unicode cannot be stored: {exc}") from None


_decode_task = TaskDecoder([c.name for c in tasks.columns])
_decode_archived = TaskDecoder([c.name for c in archived_tasks.columns])


def _status_or_none(status: str | TaskStatus | None) -> str | None:
    return None if status is None else normalize_status(status)


def _non_negative(value: Any, name: str) -> int:
    number = check_int(value, name)
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number
