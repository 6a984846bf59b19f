"""Moving tasks between the live tables and the archive, as set operations.

Each helper runs inside the caller's transaction and never commits, so a
move (insert-from-select, then delete) is all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
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

from .errors import TaskConflictError
from .models import archived_task_shards, archived_tasks, task_shards, tasks
from .records import TERMINAL_STATUSES

#: Ids moved per statement by ``archive_expired`` (keeps IN lists small).
CHUNK = 500
_UTC_SUFFIX = "+00:00"

TASK_COLUMNS = [c.name for c in tasks.columns]
SHARD_COLUMNS = [c.name for c in task_shards.columns]


IDS: BindParameter[Any] = bindparam("ids", expanding=True)


def _exists_stmt(table: Table, key: str) -> Select[Any]:
    return select(literal(1)).select_from(table).where(table.c[key] == bindparam("id")).limit(1)


def _copy_stmt(source: Table, target: Table, key: str, columns: list[str], stamp: bool) -> Insert:
    """INSERT INTO target SELECT columns [, :archived_at] FROM source WHERE key IN :ids."""
    selected: list[ColumnElement[Any]] = [source.c[c] for c in columns]
    target_columns = list(columns)
    if stamp:
        selected.append(bindparam("archived_at", type_=Text()).label("archived_at"))
        target_columns.append("archived_at")
    return insert(target).from_select(
        target_columns, select(*selected).where(source.c[key].in_(IDS))
    )


# Built once: every move runs these with ``ids`` (and ``archived_at``) bound.
LIVE_EXISTS = _exists_stmt(tasks, "task_id")
ARCHIVED_EXISTS = _exists_stmt(archived_tasks, "task_id")
ARCHIVED_SHARDS_EXIST = _exists_stmt(archived_task_shards, "uniqc_task_id")
ARCHIVE_TASKS = _copy_stmt(tasks, archived_tasks, "task_id", TASK_COLUMNS, True)
ARCHIVE_SHARDS = _copy_stmt(task_shards, archived_task_shards, "uniqc_task_id", SHARD_COLUMNS, True)
RESTORE_TASKS = _copy_stmt(archived_tasks, tasks, "task_id", TASK_COLUMNS, False)
RESTORE_SHARDS = _copy_stmt(
    archived_task_shards, task_shards, "uniqc_task_id", SHARD_COLUMNS, False
)
DELETE_LIVE_SHARDS = delete(task_shards).where(task_shards.c.uniqc_task_id.in_(IDS))
DELETE_LIVE = delete(tasks).where(tasks.c.task_id.in_(IDS))
DELETE_ARCHIVED_SHARDS = delete(archived_task_shards).where(
    archived_task_shards.c.uniqc_task_id.in_(IDS)
)
DELETE_ARCHIVED = delete(archived_tasks).where(archived_tasks.c.task_id.in_(IDS))
ARCHIVED_AMONG = select(archived_tasks.c.task_id).where(archived_tasks.c.task_id.in_(IDS))


def _exists(conn: Connection, stmt: Select[Any], value: str) -> bool:
    return conn.execute(stmt, {"id": value}).first() is not None


def _archive_ids(conn: Connection, ids: Sequence[str], now: str) -> None:
    params = {"ids": list(ids), "archived_at": now}
    conn.execute(ARCHIVE_TASKS, params)
    conn.execute(ARCHIVE_SHARDS, params)
    conn.execute(DELETE_LIVE_SHARDS, params)
    conn.execute(DELETE_LIVE, params)


def archive_one(conn: Connection, task_id: str, now: str) -> bool:
    """Archive one task and its shards; False if it is not a live task."""
    if not _exists(conn, LIVE_EXISTS, task_id):
        return False
    if _exists(conn, ARCHIVED_EXISTS, task_id) or _exists(conn, ARCHIVED_SHARDS_EXIST, task_id):
        raise TaskConflictError(
            f"task {task_id!r} is already in the archive; delete_archived() or "
            "restore_task() it first (nothing was moved)"
        )
    _archive_ids(conn, [task_id], now)
    return True


def restore_one(conn: Connection, task_id: str) -> bool:
    """Move an archived task and its shards back; False if it is not archived."""
    if not _exists(conn, ARCHIVED_EXISTS, task_id):
        return False
    if _exists(conn, LIVE_EXISTS, task_id):
        raise TaskConflictError(
            f"task {task_id!r} exists as a live task; delete() it or delete_archived() "
            "the archived copy first (nothing was moved)"
        )
    conn.execute(RESTORE_TASKS, {"ids": [task_id]})
    conn.execute(RESTORE_SHARDS, {"ids": [task_id]})
    delete_archived(conn, task_id)
    return True


def delete_archived(conn: Connection, task_id: str) -> bool:
    """Delete an archived task and its archived shards; True if the task existed."""
    conn.execute(
        delete(archived_task_shards).where(archived_task_shards.c.uniqc_task_id == task_id)
    )
    result = conn.execute(delete(archived_tasks).where(archived_tasks.c.task_id == task_id))
    return bool(result.rowcount)


def delete_everything(conn: Connection) -> None:
    """Empty the four tables (children first); the schema stays."""
    for table in (task_shards, archived_task_shards, tasks, archived_tasks):
        conn.execute(delete(table))


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


def archive_expired(conn: Connection, hours: float, terminal_only: bool, now: str) -> ExpiryOutcome:
    """Archive expired tasks in chunks of set operations; one transaction in all."""
    cutoff = cutoff_for(hours)
    outcome = ExpiryOutcome()
    if terminal_only:
        running = select(tasks.c.task_id).where(tasks.c.status.not_in(TERMINAL_STATUSES))
        outcome.skipped_running = list(conn.execute(running).scalars())
    candidates = expired_ids(conn, cutoff, terminal_only)
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
        taken = set(conn.execute(ARCHIVED_AMONG, {"ids": chunk}).scalars())
        movable = [task_id for task_id in chunk if task_id not in taken]
        outcome.skipped_conflicts += [task_id for task_id in chunk if task_id in taken]
        if movable:
            _archive_ids(conn, movable, now)
            outcome.archived += movable
    return outcome
