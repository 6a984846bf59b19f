"""Moving tasks between the live tables and the archive, as set operations.

Each helper runs inside the caller's transaction and never commits, so a
move (insert-from-select, then delete) is all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, delete, func, insert, literal, select

from .errors import TaskConflictError
from .models import archived_task_shards, archived_tasks, task_shards, tasks
from .records import TERMINAL_STATUSES

#: Ids moved per statement by ``archive_expired`` (keeps IN lists small).
CHUNK = 500
_UTC_SUFFIX = "+00:00"

TASK_COLUMNS = [c.name for c in tasks.columns]
SHARD_COLUMNS = [c.name for c in task_shards.columns]


def _exists(conn: Connection, table: Table, key: str, value: str) -> bool:
    stmt = select(literal(1)).select_from(table).where(table.c[key] == value).limit(1)
    return conn.execute(stmt).first() is not None


def _move(
    conn: Connection, source: Table, target: Table, key: str, ids: Sequence[str],
    columns: list[str], archived_at: str | None,
) -> int:  # fmt: skip
    """INSERT INTO target SELECT ... FROM source WHERE key IN ids (plus archived_at)."""
    selected: list[ColumnElement[Any]] = [source.c[c] for c in columns]
    target_columns = list(columns)
    if archived_at is not None:
        selected.append(literal(archived_at).label("archived_at"))
        target_columns.append("archived_at")
    query = select(*selected).where(source.c[key].in_(ids))
    result = conn.execute(insert(target).from_select(target_columns, query))
    return int(result.rowcount)


def _archive_ids(conn: Connection, ids: Sequence[str], now: str) -> None:
    _move(conn, tasks, archived_tasks, "task_id", ids, TASK_COLUMNS, now)
    _move(conn, task_shards, archived_task_shards, "uniqc_task_id", ids, SHARD_COLUMNS, now)
    conn.execute(delete(task_shards).where(task_shards.c.uniqc_task_id.in_(ids)))
    conn.execute(delete(tasks).where(tasks.c.task_id.in_(ids)))


def archive_one(conn: Connection, task_id: str, now: str) -> bool:
    """Archive one task and its shards; False if it is not a live task."""
    if not _exists(conn, tasks, "task_id", task_id):
        return False
    if _exists(conn, archived_tasks, "task_id", task_id) or _exists(
        conn, archived_task_shards, "uniqc_task_id", task_id
    ):
        raise TaskConflictError(
            f"task {task_id!r} is already in the archive; delete_archived() or "
            "restore_task() it first (nothing was moved)"
        )
    _archive_ids(conn, [task_id], now)
    return True


def restore_one(conn: Connection, task_id: str) -> bool:
    """Move an archived task and its shards back; False if it is not archived."""
    if not _exists(conn, archived_tasks, "task_id", task_id):
        return False
    if _exists(conn, tasks, "task_id", task_id):
        raise TaskConflictError(
            f"task {task_id!r} exists as a live task; delete() it or delete_archived() "
            "the archived copy first (nothing was moved)"
        )
    ids = [task_id]
    _move(conn, archived_tasks, tasks, "task_id", ids, TASK_COLUMNS, None)
    _move(conn, archived_task_shards, task_shards, "uniqc_task_id", ids, SHARD_COLUMNS, None)
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
        taken = set(
            conn.execute(
                select(archived_tasks.c.task_id).where(archived_tasks.c.task_id.in_(chunk))
            ).scalars()
        )
        movable = [task_id for task_id in chunk if task_id not in taken]
        outcome.skipped_conflicts += [task_id for task_id in chunk if task_id in taken]
        if movable:
            _archive_ids(conn, movable, now)
            outcome.archived += movable
    return outcome
