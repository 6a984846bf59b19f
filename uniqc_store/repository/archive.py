"""Moving tasks between the live tables and the archive, as set operations.

Each helper runs inside the caller's transaction and never commits, so a
move (insert-from-select, then delete) is all or nothing.

Isolation, per engine. A move first locks the rows it moves: the task, then
its shards (``SELECT ... FOR UPDATE``), and only then copies and deletes.

- PostgreSQL (READ COMMITTED): every statement sees what committed before it
  started. Without the locks a shard or an update committed between the copy
  and the delete was deleted (the cascade) without being copied. With them,
  an update of the task or a shard waits for the move; a new shard's foreign
  key check (``FOR KEY SHARE`` on the task) waits too, then finds no parent
  (``MissingParentTaskError``), so nothing acknowledged is lost.
- MariaDB/MySQL (REPEATABLE READ): locking reads and ``INSERT ... SELECT``
  read the newest committed rows, and the locks hold writers off as above.
- SQLite: a write transaction opens with ``BEGIN IMMEDIATE``, which takes the
  database's write lock, so moves and writes are serialised whole; the
  per-row locks compile to plain reads there.

A move checks its destination with a plain read and maps a key clash to
``TaskConflictError``; it never locks the destination, so two moves never
wait on each other in a cycle.

After its first lock a unit acts only on rows that lock covers or that a
foreign key or key clash holds off; ``docs/concurrency.md`` lists every
multi-statement unit, what each statement locks per engine, and its race test.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Text,
    TextClause,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from uniqc_store.db.executor import Transaction
from uniqc_store.errors import TaskConflictError
from uniqc_store.records import TERMINAL_STATUSES
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.validation import age_in_hours

#: Tasks it moves per transaction: small, so that a writer beside it waits for one
#: short transaction at most (measured at 1M tasks: ``benchmarks/retention.py``).
CHUNK = 100
_UTC_SUFFIX = "+00:00"

Match = Callable[[Table, str], ColumnElement[bool]]


def _one(table: Table, key: str) -> ColumnElement[bool]:
    return table.c[key] == bindparam("id")


def _many(table: Table, key: str) -> ColumnElement[bool]:
    return table.c[key].in_(bindparam("ids", expanding=True))


def _copy(source: Table, target: Table, key: str, stamp: bool, match: Match) -> Insert:
    """INSERT INTO target SELECT <source columns> [, :archived_at] FROM source WHERE <match>."""
    columns = [c.name for c in source.columns if c.name != "archived_at"]
    selected: list[ColumnElement[Any]] = [source.c[c] for c in columns]
    if stamp:
        selected.append(bindparam("archived_at", type_=Text()).label("archived_at"))
        columns.append("archived_at")
    copy = insert(target).from_select(columns, select(*selected).where(match(source, key)))
    # SQLAlchemy keeps an INSERT's rowcount only when asked: a restore compares it
    return copy.execution_options(preserve_rowcount=True)


def _lock(table: Table, key: str, match: Match, *columns: str) -> Select[Any]:
    """SELECT key [, columns] ... FOR UPDATE, in key order (one lock order for everyone)."""
    picked = [table.c[name] for name in (key, *columns)]
    return select(*picked).where(match(table, key)).order_by(*table.primary_key).with_for_update()


@dataclass(frozen=True)
class MoveStatements:
    """The statements of a move, for one id (``:id``) or a list (``:ids``)."""

    lock_live: Select[Any]
    lock_live_shards: Select[Any]
    lock_archived: Select[Any]
    lock_archived_shards: Select[Any]
    find_live: Select[Any]
    find_archived: Select[Any]
    archive_tasks: Insert
    archive_shards: Insert
    restore_tasks: Insert
    restore_shards: Insert
    delete_live: Delete
    delete_archived_shards: Delete
    delete_archived: Delete

    @classmethod
    def matching(cls, match: Match) -> MoveStatements:
        return cls(
            lock_live=_lock(tasks, "task_id", match, "status", "update_time", "submit_time"),
            lock_live_shards=_lock(task_shards, "uniqc_task_id", match, "shard_index"),
            lock_archived=_lock(archived_tasks, "task_id", match),
            lock_archived_shards=_lock(archived_task_shards, "uniqc_task_id", match, "shard_index"),
            find_live=select(tasks.c.task_id).where(match(tasks, "task_id")),
            find_archived=select(archived_tasks.c.task_id).where(match(archived_tasks, "task_id")),
            archive_tasks=_copy(tasks, archived_tasks, "task_id", True, match),
            archive_shards=_copy(task_shards, archived_task_shards, "uniqc_task_id", True, match),
            restore_tasks=_copy(archived_tasks, tasks, "task_id", False, match),
            restore_shards=_copy(archived_task_shards, task_shards, "uniqc_task_id", False, match),
            delete_live=delete(tasks).where(match(tasks, "task_id")),
            delete_archived_shards=delete(archived_task_shards).where(
                match(archived_task_shards, "uniqc_task_id")
            ),
            delete_archived=delete(archived_tasks).where(match(archived_tasks, "task_id")),
        )


@functools.cache
def moves(many: bool) -> MoveStatements:
    """The move statements, built once, on first use: single-id moves bind ``id``
    (and may run on the direct path); ``archive_expired`` binds chunks as ``ids``."""
    return MoveStatements.matching(_many if many else _one)


def _lock_shards(tx: Transaction, lock: Select[Any], params: dict[str, Any]) -> None:
    """Lock the shards a move copies. SQLite needs nothing more: BEGIN IMMEDIATE
    already holds the database's write lock."""
    if tx.connection.dialect.name != "sqlite":
        tx.fetch(lock, params)


def _archive(tx: Transaction, moves: MoveStatements, params: dict[str, Any]) -> None:
    """Copy locked tasks and their shards into the archive, then delete the tasks
    (their shards go by the foreign key's cascade, on every engine)."""
    try:
        tx.run(moves.archive_tasks, params)
    except IntegrityError as exc:  # an archived copy appeared after the check
        raise TaskConflictError(
            "a task being archived is already in the archive; nothing was moved, try again"
        ) from exc
    tx.run(moves.archive_shards, params)
    tx.run(moves.delete_live, params)


def archive_one(tx: Transaction, task_id: str, now: str) -> bool:
    """Archive one task and its shards; False if it is not a live task."""
    params = {"id": task_id, "archived_at": now}
    if not tx.fetch(moves(False).lock_live, params):
        return False
    _lock_shards(tx, moves(False).lock_live_shards, params)
    if tx.fetch(moves(False).find_archived, params):
        raise TaskConflictError(
            f"task {task_id!r} is already in the archive; delete the archived copy or "
            "restore it first (nothing was moved)"
        )
    _archive(tx, moves(False), params)
    return True


def restore_one(tx: Transaction, task_id: str) -> bool:
    """Move an archived task and its shards back; False if it is not archived.

    Archived shards have no foreign key, so the archived task's lock does not
    hold off a shard another program writes meanwhile (an archive of this id
    cannot: its task insert clashes with the locked row first). On PostgreSQL
    the copy and the delete each take a new snapshot, so the delete could take
    a shard the copy never saw: it must delete exactly what was copied.
    """
    params = {"id": task_id}
    if not tx.fetch(moves(False).lock_archived, params):
        return False
    _lock_shards(tx, moves(False).lock_archived_shards, params)
    conflict = TaskConflictError(
        f"task {task_id!r} exists as a live task; delete the live task or the archived "
        "copy first (nothing was moved)"
    )
    if tx.fetch(moves(False).find_live, params):
        raise conflict
    try:
        tx.run(moves(False).restore_tasks, params)
    except IntegrityError as exc:  # saved as a live task after the check
        raise conflict from exc
    copied = tx.run(moves(False).restore_shards, params)
    if tx.run(moves(False).delete_archived_shards, params) != copied:
        raise TaskConflictError(
            f"the archived shards of task {task_id!r} changed while it was being restored "
            "(another program wrote them); nothing was moved, try again"
        )
    tx.run(moves(False).delete_archived, params)
    return True


def delete_archived(tx: Transaction, task_id: str) -> bool:
    """Delete an archived task and its archived shards; True if the task existed.

    Only a task this call found and locked is deleted, shards included: a
    lock that found nothing means nothing else runs. (On PostgreSQL an archive
    of this id may commit just after the lock found nothing; a shard delete run
    then, in its new snapshot, took the shards the archive had just committed,
    and the task stayed archived without them.) Once the row is locked no move
    can add archived shards for the id: an archive's task insert clashes with
    it and a restore waits for it.
    """
    params = {"id": task_id}
    if not tx.fetch(moves(False).lock_archived, params):
        return False
    tx.run(moves(False).delete_archived_shards, params)
    tx.run(moves(False).delete_archived, params)
    return True


#: The tables ``delete_everything`` empties, children before parents.
_EVERY_TABLE = (task_shards, archived_task_shards, tasks, archived_tasks)
#: The order it locks them in on PostgreSQL: live tables first, as saves and archives go.
_LOCK_ORDER = (tasks, task_shards, archived_tasks, archived_task_shards)


def delete_everything(tx: Transaction) -> None:
    """Empty the four tables (children first); the schema stays.

    Four DELETEs are four snapshots on PostgreSQL: a move committed between
    two of them survived in part (archived shards whose task the last DELETE
    took, a task restored after the live table was emptied). So the tables
    are locked against writers first (``EXCLUSIVE``: plain reads go on), live
    tables first as saves and archives take them (a restore in flight may still
    deadlock with it: the server aborts one and the executor runs it again).
    MariaDB's DELETEs lock every row and gap they scan (REPEATABLE READ), and
    SQLite's BEGIN IMMEDIATE holds the database: nothing more is needed there.
    """
    if tx.connection.dialect.name == "postgresql":
        tx.run(_lock_tables(tx.connection), {})
    for table in _EVERY_TABLE:
        tx.run(delete(table), {})


def _lock_tables(conn: Connection) -> TextClause:
    quote = conn.dialect.identifier_preparer.format_table
    names = ", ".join(quote(table) for table in _LOCK_ORDER)
    return text(f"LOCK TABLE {names} IN EXCLUSIVE MODE")


@dataclass
class ExpiryOutcome:
    """What ``archive_expired`` did."""

    archived: list[str] = field(default_factory=list)
    skipped_running: list[str] = field(default_factory=list)
    skipped_conflicts: list[str] = field(default_factory=list)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + _UTC_SUFFIX if value.endswith("Z") else value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _stamp_expired(update_time: str | None, submit_time: str | None, cutoff: datetime) -> bool:
    """The Python form of the expiry test: last touched (update, else submit) before cutoff."""
    when = _parse_time(update_time or submit_time)
    return when is not None and when <= cutoff


_STAMP = func.coalesce(func.nullif(tasks.c.update_time, ""), tasks.c.submit_time)
_STAMPED_UTC = _STAMP.like(f"%{_UTC_SUFFIX}")


@functools.cache
def _expiry_queries(terminal_only: bool) -> tuple[Select[Any], Select[Any]]:
    """Built once per flavour: (UTC rows compared in SQL, rows in any other form)."""
    base = select(tasks.c.task_id)
    if terminal_only:
        base = base.where(tasks.c.status.in_(TERMINAL_STATUSES))
    stamp = _STAMP
    utc = base.where(_STAMPED_UTC, stamp <= bindparam("cutoff")).order_by(stamp)
    return utc, base.add_columns(stamp).where(~_STAMPED_UTC)


def expired_ids(conn: Connection, cutoff: datetime, terminal_only: bool) -> list[str]:
    """Ids of tasks last touched before ``cutoff``, oldest first.

    Timestamps we write are UTC ISO-8601 text ending in ``+00:00``, which
    sorts as time does, so the database compares those; rows in any other
    form (``Z``, other offsets, naive, garbage) are parsed here, as the
    reference did, and unparseable ones are never archived.
    """
    utc, odd = _expiry_queries(terminal_only)
    found = list(conn.execute(utc, {"cutoff": cutoff.isoformat()}).scalars())
    odd_rows = conn.execute(odd)
    found += [task_id for task_id, value in odd_rows if (t := _parse_time(value)) and t <= cutoff]
    return found


def _still_expired(
    tx: Transaction, chunk: Sequence[str], cutoff: datetime, terminal_only: bool
) -> set[str]:
    """Lock the chunk's live rows and keep those still expired now that nobody can change them
    (a concurrent save may have touched one, a concurrent move taken it)."""
    expired = set()
    locked = tx.fetch(moves(True).lock_live, {"ids": chunk})
    for task_id, status, update_time, submit_time in locked:
        if _expires(status, update_time, submit_time, cutoff, terminal_only):
            expired.add(task_id)
    return expired


def _expires(
    status: str, update_time: str | None, submit_time: str | None, cutoff: datetime, terminal: bool
) -> bool:
    return (status in TERMINAL_STATUSES or not terminal) and _stamp_expired(
        update_time, submit_time, cutoff
    )


#: The candidates' read (``expiry_candidates``): the live tasks whose ``update_time``
#: sorts before ``:day_after`` (a range of ``tasks_update_time_idx``, revision 0010),
#: less those whose stamp is in the store's own form (``YYYY-MM-DDT...+00:00``, which
#: sorts as time does) and after ``:cutoff``.
EXPIRY_CANDIDATES = select(tasks.c.task_id).where(
    tasks.c.update_time < bindparam("day_after"),
    or_(
        tasks.c.update_time <= bindparam("cutoff"),
        func.substr(tasks.c.update_time, 11, 1) != "T",
        ~tasks.c.update_time.like(f"%{_UTC_SUFFIX}"),
    ),
)


def _outside(values: Sequence[str]) -> ColumnElement[bool]:
    """``column NOT IN values`` as ranges between them (an index serves ranges)."""
    column = tasks.c.status
    edges = sorted(values)
    ranges = [column < edges[0], column > edges[-1]]
    ranges += [and_(column > low, column < high) for low, high in itertools.pairwise(edges)]
    return or_(*ranges)


#: The live tasks not finished (``skipped_running`` when ``terminal_only``): ranges of
#: ``tasks_status_time_idx`` around the terminal statuses.
NOT_FINISHED = select(tasks.c.task_id).where(_outside(TERMINAL_STATUSES))


def candidate_bounds(cutoff: datetime) -> dict[str, str]:
    """The parameters of ``EXPIRY_CANDIDATES`` for ``cutoff``.

    Why the day after the next: a stamp the store parses (``_parse_time``) is
    ISO-8601 text starting with its local date, and its offset is under 24 hours,
    so a stamp that expired has a local date at most ``cutoff + 24h``'s, which
    sorts before the date after it whatever follows the date (a time, ``Z``, an
    offset, any separator). Only a stamp in ISO-8601's basic, ordinal or week
    layout (``20250101``, ``2025-001``, ``2025-W01-1``, which Python 3.11 also
    parses) can sort later and is not found. Every candidate is checked again by
    the same rule as before (``_expires``, on the locked row) before it moves.
    """
    day_after = (cutoff + timedelta(days=2)).date().isoformat()
    return {"cutoff": cutoff.isoformat(), "day_after": day_after}


def expiry_candidates(conn: Connection, cutoff: datetime, skip: Collection[str] = ()) -> list[str]:
    """The ids that may have expired by ``cutoff`` (a superset), but ``skip``, in id order."""
    found = conn.execute(EXPIRY_CANDIDATES, candidate_bounds(cutoff)).scalars()
    left_alone = set(skip)
    return sorted(task_id for task_id in found if task_id not in left_alone)


def not_finished(conn: Connection) -> list[str]:
    """The ids of the live tasks not in a terminal status, in id order."""
    return sorted(conn.execute(NOT_FINISHED).scalars())


def archive_chunk(
    tx: Transaction, chunk: Sequence[str], cutoff: datetime, terminal_only: bool, now: str
) -> tuple[list[str], list[str]]:
    """Archive the chunk's tasks that are still expired once locked: one atomic unit.

    Returns (moved, already archived). Every statement after the lock acts only
    on rows it locked (``docs/concurrency.md``), so chunks are independent
    transactions: an error in one leaves the chunks before it committed.
    """
    expired = _still_expired(tx, sorted(chunk), cutoff, terminal_only)
    if not expired:
        return [], []
    ids = sorted(expired)
    taken = {row[0] for row in tx.fetch(moves(True).find_archived, {"ids": ids})}
    movable = [t for t in ids if t not in taken]
    if movable:
        params = {"ids": movable, "archived_at": now}
        _lock_shards(tx, moves(True).lock_live_shards, params)
        _archive(tx, moves(True), params)
    return movable, [t for t in ids if t in taken]


def archive_listed(tx: Transaction, chunk: Sequence[str], now: str) -> tuple[list[str], list[str]]:
    """Archive the chunk's live tasks, as ``archive_one`` would each: one atomic unit.

    Returns (moved, live but already archived: left alone). Ids that are not live
    tasks are in neither. Locks the live rows and their shards first, then acts
    only on those (``docs/concurrency.md``). An archived copy that appears after
    the check (written by another program: a move of these ids waits for the
    locks) is a ``TaskConflictError`` for the whole chunk, which then moved nothing.
    """
    locked = [row[0] for row in tx.fetch(moves(True).lock_live, {"ids": sorted(set(chunk))})]
    if not locked:
        return [], []
    _lock_shards(tx, moves(True).lock_live_shards, {"ids": locked})
    taken = {row[0] for row in tx.fetch(moves(True).find_archived, {"ids": locked})}
    movable = [task_id for task_id in locked if task_id not in taken]
    if movable:
        _archive(tx, moves(True), {"ids": movable, "archived_at": now})
    return movable, sorted(taken)


# -- retention: purging the archive ---------------------------------------------

#: The columns the purge walk reads from ``archived_tasks``, a page at a time.
PURGE_SCAN = ("task_id", "archived_at")
#: The ``keep_last``-th newest archived task (``:offset`` = keep_last - 1): the
#: newest rows, from it up, are kept. The stored text's order is time order for
#: the store's own stamps (UTC ISO-8601 ending in ``+00:00``).
KEEP_BOUNDARY = (
    select(archived_tasks.c.archived_at, archived_tasks.c.task_id)
    .order_by(archived_tasks.c.archived_at.desc(), archived_tasks.c.task_id.desc())
    .limit(1)
    .offset(bindparam("offset", type_=Integer()))
)
_LOCK_ARCHIVED_AT = _lock(archived_tasks, "task_id", _many, "archived_at")
COUNT_ARCHIVED_SHARDS = (
    select(func.count())
    .select_from(archived_task_shards)
    .where(_many(archived_task_shards, "uniqc_task_id"))
)

Boundary = tuple[str, str] | None


def purgeable(task_id: str, archived_at: str | None, cutoff: datetime, keep: Boundary) -> bool:
    """Archived before ``cutoff`` and older than the kept newest rows (``keep``).

    An ``archived_at`` that does not parse as a time is never purged."""
    when = _parse_time(archived_at)
    if when is None or when > cutoff:
        return False
    return keep is None or (str(archived_at), task_id) < keep


def purge_candidates(rows: Sequence[Sequence[Any]], cutoff: datetime, keep: Boundary) -> list[str]:
    """The ids of a page of the purge walk that are due."""
    return [row[0] for row in rows if purgeable(row[0], row[1], cutoff, keep)]


def purge_batch(
    tx: Transaction, batch: Sequence[str], cutoff: datetime, keep: Boundary
) -> tuple[list[str], int]:
    """Delete the batch's archived tasks still due once locked, with their archived
    shards: one atomic unit. Returns (deleted ids, shards deleted).

    As ``delete_archived``: only rows this unit found and locked are deleted,
    shards included; a restore or a re-archive of an id (a new ``archived_at``)
    committed since the walk read it is respected.
    """
    locked = tx.fetch(_LOCK_ARCHIVED_AT, {"ids": sorted(batch)})
    doomed = sorted(row[0] for row in locked if purgeable(row[0], row[1], cutoff, keep))
    if not doomed:
        return [], 0
    shards = tx.run(moves(True).delete_archived_shards, {"ids": doomed})
    tx.run(moves(True).delete_archived, {"ids": doomed})
    return doomed, shards


#: The ids a report names, at most (its counts are always complete).
MAX_REPORTED_IDS = 1000


@dataclass
class PurgeReport:
    """What ``purge_archived`` did (or, with ``dry_run``, would do).

    ``tasks`` / ``shards``: archived tasks and archived shards deleted (or due);
    ``task_ids``: their ids, in id order, when there are at most
    ``MAX_REPORTED_IDS`` of them (``ids_complete`` says whether all are named);
    ``batches``: the transactions that deleted something (dry run: would).
    """

    older_than_hours: float
    keep_last: int
    dry_run: bool
    tasks: int = 0
    shards: int = 0
    batches: int = 0
    task_ids: list[str] = field(default_factory=list)
    ids_complete: bool = True

    def add(self, ids: Sequence[str], shards: int) -> None:
        self.tasks += len(ids)
        self.shards += shards
        self.batches += 1 if ids else 0
        room = MAX_REPORTED_IDS - len(self.task_ids)
        self.task_ids += ids[: max(room, 0)]
        self.ids_complete = self.ids_complete and len(ids) <= room

    def as_dict(self) -> dict[str, Any]:
        return {
            "older_than_hours": self.older_than_hours,
            "keep_last": self.keep_last,
            "dry_run": self.dry_run,
            "tasks": self.tasks,
            "shards": self.shards,
            "batches": self.batches,
            "task_ids": list(self.task_ids),
            "ids_complete": self.ids_complete,
        }


def cutoff_for(hours: float, name: str = "hours") -> datetime:
    """The moment ``hours`` ago; tasks last touched before it have expired."""
    return datetime.now(timezone.utc) - timedelta(hours=age_in_hours(hours, name))
