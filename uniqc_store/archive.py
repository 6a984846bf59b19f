"""Moving tasks between the live tables and the archive, as set operations.

Each helper runs inside the caller's transaction and never commits, so a
move (insert-from-select, then delete) is all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Insert,
    Select,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError

from .connections import Transaction
from .errors import TaskConflictError
from .models import archived_task_shards, archived_tasks, task_shards, tasks
from .records import TERMINAL_STATUSES

#: Ids moved per statement by ``archive_expired`` (keeps IN lists small).
CHUNK = 500
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
    return insert(target).from_select(columns, select(*selected).where(match(source, key)))


@dataclass(frozen=True)
class MoveStatements:
    """The statements of a move, for one id (``:id``) or a list (``:ids``)."""

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


# Built once. Single-id moves bind ``id`` (and run straight on the SQLite driver);
# ``archive_expired`` moves chunks of ids bound as ``ids``.
ONE = MoveStatements.matching(_one)
MANY = MoveStatements.matching(_many)
#: Whether ``:id`` is live and whether it is archived (one round trip).
WHERE_IS = cast(
    "Select[Any]",
    select(
        select(literal(1)).where(_one(tasks, "task_id")).exists(),
        select(literal(1)).where(_one(archived_tasks, "task_id")).exists(),
    ),
)
ARCHIVED_AMONG = select(archived_tasks.c.task_id).where(_many(archived_tasks, "task_id"))


def _where_is(tx: Transaction, task_id: str) -> tuple[bool, bool]:
    live, archived = tx.fetch(WHERE_IS, {"id": task_id})[0]
    return bool(live), bool(archived)


def _archive(tx: Transaction, moves: MoveStatements, params: dict[str, Any]) -> int:
    """Copy tasks and shards into the archive, then delete the tasks (their shards
    go by the foreign key's cascade, on every engine); how many tasks moved."""
    moved = tx.run(moves.archive_tasks, params)
    if moved:
        tx.run(moves.archive_shards, params)
        tx.run(moves.delete_live, params)
    return moved


def archive_one(tx: Transaction, task_id: str, now: str) -> bool:
    """Archive one task and its shards; False if it is not a live task.

    An id already in the archive makes the copy fail on its primary key: the
    transaction is rolled back and nothing moves.
    """
    try:
        return _archive(tx, ONE, {"id": task_id, "archived_at": now}) > 0
    except IntegrityError as exc:
        raise TaskConflictError(
            f"task {task_id!r} is already in the archive; delete_archived() or "
            "restore_task() it first (nothing was moved)"
        ) from exc


def restore_one(tx: Transaction, task_id: str) -> bool:
    """Move an archived task and its shards back; False if it is not archived."""
    live, archived = _where_is(tx, task_id)
    if not archived:
        return False
    if live:
        raise TaskConflictError(
            f"task {task_id!r} exists as a live task; delete() it or delete_archived() "
            "the archived copy first (nothing was moved)"
        )
    tx.run(ONE.restore_tasks, {"id": task_id})
    tx.run(ONE.restore_shards, {"id": task_id})
    delete_archived(tx, task_id)
    return True


def delete_archived(tx: Transaction, task_id: str) -> bool:
    """Delete an archived task and its archived shards; True if the task existed."""
    tx.run(ONE.delete_archived_shards, {"id": task_id})
    return tx.run(ONE.delete_archived, {"id": task_id}) > 0


def delete_everything(tx: Transaction) -> None:
    """Empty the four tables (children first); the schema stays."""
    for table in (task_shards, archived_task_shards, tasks, archived_tasks):
        tx.run(delete(table), {})


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


def expired_ids(conn: Connection, cutoff: datetime, terminal_only: bool) -> list[str]:
    """Ids of tasks last touched before ``cutoff``, oldest first.

    Timestamps we write are UTC ISO-8601 text ending in ``+00:00``, which
    sorts as time does, so the database compares those; rows in any other
    form (``Z``, other offsets, naive, garbage) are parsed here, as the
    reference did, and unparseable ones are never archived.
    """
    stamp = func.coalesce(func.nullif(tasks.c.update_time, ""), tasks.c.submit_time)
    utc = stamp.like(f"%{_UTC_SUFFIX}")
    base = select(tasks.c.task_id)
    if terminal_only:
        base = base.where(tasks.c.status.in_(TERMINAL_STATUSES))
    found = list(
        conn.execute(base.where(utc, stamp <= cutoff.isoformat()).order_by(stamp)).scalars()
    )
    odd_rows = conn.execute(base.add_columns(stamp).where(~utc))
    found += [task_id for task_id, value in odd_rows if (t := _parse_time(value)) and t <= cutoff]
    return found


def cutoff_for(hours: float) -> datetime:
    """The moment ``hours`` ago; tasks last touched before it have expired."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 <= hours < 1e6:
        raise ValueError(f"hours must be a number from 0 to 1e6, not {hours!r}")
    return datetime.now(timezone.utc) - timedelta(hours=hours)


def archive_expired(tx: Transaction, hours: float, terminal_only: bool, now: str) -> ExpiryOutcome:
    """Archive expired tasks in chunks of set operations; one transaction in all."""
    cutoff = cutoff_for(hours)
    outcome = ExpiryOutcome()
    if terminal_only:
        running = select(tasks.c.task_id).where(tasks.c.status.not_in(TERMINAL_STATUSES))
        outcome.skipped_running = [row[0] for row in tx.fetch(running, {})]
    candidates = expired_ids(tx.connection, cutoff, terminal_only)
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
        taken = {row[0] for row in tx.fetch(ARCHIVED_AMONG, {"ids": chunk})}
        movable = [task_id for task_id in chunk if task_id not in taken]
        outcome.skipped_conflicts += [task_id for task_id in chunk if task_id in taken]
        if movable:
            _archive(tx, MANY, {"ids": movable, "archived_at": now})
            outcome.archived += movable
    return outcome
