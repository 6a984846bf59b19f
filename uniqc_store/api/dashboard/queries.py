"""The dashboard's reads: keyset pages of task summaries, searches, and the counts
(``TaskStore.tally``, where every count of the package comes from).

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

from sqlalchemy import Connection, Select, Table, bindparam, select, tuple_

from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks

Order = Literal["newest", "oldest"]
TableName = Literal["live", "archived"]
TABLES: dict[str, Table] = {"live": tasks, "archived": archived_tasks}
SHARD_TABLES: dict[str, Table] = {"live": task_shards, "archived": archived_task_shards}
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
    key = tuple_(table.c.submit_time, table.c.task_id)
    stmt = _filtered(_summaries(which), table, status, backend)
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
    """Tasks per status and per backend: one tally (one read, so the two agree)."""
    found = store.tally(archived=which == "archived")
    return {"status": found.by_status(), "backend": found.by_backend()}


#: How many tasks a search returns per table: a search finds a task, it does not list them.
SEARCH_LIMIT = 20
#: The highest code point, and the surrogates no engine stores (skipped by ``prefix_end``).
_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The least text above every text starting with ``prefix`` (None: there is none).

    Every engine compares the key columns by code point (SQLite's BINARY, MySQL's
    NO PAD binary collation, PostgreSQL's ``"C"`` collation from revision 0008,
    whatever the database's locale), so the texts starting
    with ``prefix`` are exactly ``prefix <= id < prefix_end(prefix)``: a range the
    primary key answers, where ``LIKE`` would need a pattern index on PostgreSQL
    and would treat ``_`` and ``%`` in an id as wildcards.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _MAX_CHAR:
            return "".join(chars) + chr(code)
    return None


def _summaries(which: TableName) -> Select[Any]:
    table = TABLES[which]
    columns = [table.c[name] for name in SUMMARY_COLUMNS]
    if which == "archived":
        columns.append(table.c.archived_at)
    return select(*columns)


def _by_task_id(which: TableName, text: str) -> Select[Any]:
    """Tasks whose id is ``text`` or starts with it, in id order, by a key-range scan."""
    table = TABLES[which]
    stmt = _summaries(which).where(table.c.task_id >= text)
    end = prefix_end(text)
    if end is not None:
        stmt = stmt.where(table.c.task_id < end)
    return stmt.order_by(table.c.task_id).limit(SEARCH_LIMIT + 1)


def _by_platform_id(which: TableName) -> Select[Any]:
    """Tasks with a shard whose platform id is exactly ``:platform_id`` (its index)."""
    table = TABLES[which]
    shards = SHARD_TABLES[which]
    # A join, not ``IN (subquery)``: MySQL would scan the whole primary key for the latter.
    # A task with two shards of that platform id comes twice; ``search`` keeps one.
    return (
        _summaries(which)
        .join(shards, shards.c.uniqc_task_id == table.c.task_id)
        .where(shards.c.platform_task_id == bindparam("platform_id"))
        .order_by(table.c.task_id)
        .limit(SEARCH_LIMIT + 1)
    )


@dataclass(frozen=True)
class Found:
    """What a search found: summaries per table, each marked by what matched."""

    rows: list[dict[str, Any]]
    more: bool


def search(store: TaskStore, text: str) -> Found:
    """Tasks, live and archived, whose id starts with ``text`` or that have a shard
    whose platform id is ``text``: four index reads in one read unit (one snapshot)."""

    def found(conn: Connection) -> Found:
        rows: list[dict[str, Any]] = []
        more = False
        for which in ("live", "archived"):
            seen: set[str] = set()
            for match, stmt in (
                ("task_id", _by_task_id(which, text)),
                ("platform_task_id", _by_platform_id(which)),
            ):
                hits = [dict(r._mapping) for r in conn.execute(stmt, {"platform_id": text})]
                more = more or len(hits) > SEARCH_LIMIT
                for hit in hits[:SEARCH_LIMIT]:
                    if hit["task_id"] not in seen:
                        seen.add(hit["task_id"])
                        rows.append({**hit, "table": which, "matched": match})
        return Found(rows, more)

    return store._read(found, snapshot=True)
