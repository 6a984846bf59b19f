"""The dashboard's reads: keyset pages of task summaries and counts by status and backend.

The REST listing pages by offset and returns whole records (results
included); a dashboard over a million tasks wants neither. A page here is the
summary columns only, ordered by ``(submit_time, task_id)`` and continued from
the last row seen, so every page costs the same as the first one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Select, Table, func, select, tuple_

from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.tables import archived_tasks, tasks

Order = Literal["newest", "oldest"]
TableName = Literal["live", "archived"]
TABLES: dict[str, Table] = {"live": tasks, "archived": archived_tasks}
SUMMARY_COLUMNS = ("task_id", "backend", "status", "shots", "submit_time", "update_time")


@dataclass(frozen=True)
class Page:
    """One page of summaries and the cursor of the next one (None at the end)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(submit_time: str, task_id: str) -> str:
    """An opaque, URL-safe cursor for the row ``(submit_time, task_id)``."""
    raw = json.dumps([submit_time, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The row a cursor points at; ``ValueError`` when it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        submit_time, task_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a page cursor: {cursor!r}") from exc
    if not isinstance(submit_time, str) or not isinstance(task_id, str):
        raise ValueError(f"not a page cursor: {cursor!r}")
    return submit_time, task_id


def _filtered(
    stmt: Select[Any], table: Table, status: str | None, backend: str | None
) -> Select[Any]:
    if status is not None:
        stmt = stmt.where(table.c.status == status)
    if backend is not None:
        stmt = stmt.where(table.c.backend == backend)
    return stmt


def page(
    store: TaskStore,
    which: TableName,
    *,
    status: str | None,
    backend: str | None,
    order: Order,
    limit: int,
    cursor: str | None,
) -> Page:
    """Up to ``limit`` summaries after ``cursor``, newest or oldest ``submit_time`` first."""
    table = TABLES[which]
    columns = [table.c[name] for name in SUMMARY_COLUMNS]
    if which == "archived":
        columns.append(table.c.archived_at)
    key = tuple_(table.c.submit_time, table.c.task_id)
    stmt = _filtered(select(*columns), table, status, backend)
    if cursor is not None:
        after = tuple_(*decode_cursor(cursor))
        stmt = stmt.where(key < after if order == "newest" else key > after)
    if order == "newest":
        stmt = stmt.order_by(table.c.submit_time.desc(), table.c.task_id.desc())
    else:
        stmt = stmt.order_by(table.c.submit_time.asc(), table.c.task_id.asc())
    limited = stmt.limit(limit + 1)
    rows = store._read(lambda conn: [dict(row._mapping) for row in conn.execute(limited)])
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    next_cursor = encode_cursor(last["submit_time"], last["task_id"]) if last else None
    return Page(rows, next_cursor)


def counts(store: TaskStore, which: TableName) -> dict[str, dict[str, int]]:
    """Tasks per status and per backend: two ``GROUP BY`` scans, each over one index,
    in one read unit (one snapshot, so the two agree)."""
    table = TABLES[which]

    def grouped(conn: Connection) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for column in ("status", "backend"):
            stmt = select(table.c[column], func.count()).group_by(table.c[column])
            result[column] = {str(name): int(n) for name, n in conn.execute(stmt)}
        return result

    return store._read(grouped, snapshot=True)
