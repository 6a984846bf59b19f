"""Export and import of a whole store as JSON Lines, streamed both ways.

Each line is ``{"table": NAME, "row": {column: value}}`` with the columns
exactly as stored (JSON payloads stay text), so SQLite -> PostgreSQL -> SQLite
gives identical rows. Export reads in one snapshot (one read unit of the
store's executor), a keyset batch at a time;
import writes everything in one transaction, a batch at a time: a bad line
raises ``ValueError`` naming it and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from sqlalchemy import Connection, Table, func, select, tuple_

from .executor import Transaction
from .records import normalize_status
from .statements import stored, upsert
from .store import TaskStore
from .tables import archived_task_shards, archived_tasks, task_shards, tasks

#: Parents before children, so foreign keys hold at every step of an import.
TABLES: dict[str, Table] = {
    t.name: t for t in (tasks, task_shards, archived_tasks, archived_task_shards)
}
BATCH = 1000

Progress = Callable[[int], None]


def count_rows(store: TaskStore) -> int:
    """How many rows an export will write."""

    def total(conn: Connection) -> int:
        statements = (select(func.count()).select_from(t) for t in TABLES.values())
        return sum(int(conn.execute(stmt).scalar_one()) for stmt in statements)

    return store._read(total)


def _keyset(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    keys = list(table.primary_key.columns)
    base = select(*stored(table)).order_by(*keys)
    last: tuple[Any, ...] | None = None
    while True:
        stmt = base if last is None else base.where(tuple_(*keys) > tuple_(*last))
        rows = conn.execute(stmt.limit(BATCH)).mappings().all()
        if not rows:
            return
        last = tuple(rows[-1][k.name] for k in keys)
        yield from (dict(r) for r in rows)


def export_jsonl(
    store: TaskStore, out: IO[str], progress: Progress | None = None
) -> dict[str, int]:
    """Write every row of the four tables to ``out``; return counts per table."""
    counts = dict.fromkeys(TABLES, 0)
    with store.reading(snapshot=True) as conn:  # a block, not retried: lines were written
        for name, table in TABLES.items():
            for row in _keyset(conn, table):
                out.write(json.dumps({"table": name, "row": row}, ensure_ascii=False))
                out.write("\n")
                counts[name] += 1
                if progress is not None:
                    progress(1)
    return counts


def _parse(line_number: int, line: str) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"line {line_number}: not JSON ({exc.msg} at column {exc.pos + 1})"
        ) from None
    try:
        name, row = item["table"], item["row"]
    except (KeyError, TypeError):
        raise ValueError(
            f'line {line_number}: not an export record (expected {{"table": ..., "row": {{...}}}})'
        ) from None
    table = TABLES.get(name) if isinstance(name, str) else None
    if table is None or not isinstance(row, dict):
        raise ValueError(f"line {line_number}: unknown table {name!r}")
    expected = {c.name for c in table.columns}
    if set(row) != expected:
        raise ValueError(
            f"line {line_number}: {name} rows need the columns {sorted(expected)}, "
            f"got {sorted(row)}"
        )
    try:
        normalize_status(row["status"])
    except ValueError as exc:
        raise ValueError(f"line {line_number}: {exc}") from None
    return name, row


def import_jsonl(
    store: TaskStore, lines: Iterable[str], progress: Progress | None = None
) -> dict[str, int]:
    """Upsert every exported row from ``lines`` in one transaction; return counts."""
    statements = {name: upsert(table, store.dialect) for name, table in TABLES.items()}

    def work(tx: Transaction) -> dict[str, int]:
        counts = dict.fromkeys(TABLES, 0)
        pending: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}

        def flush(name: str) -> None:
            if pending[name]:
                tx.run(statements[name], pending[name])
                counts[name] += len(pending[name])
                if progress is not None:
                    progress(len(pending[name]))
                pending[name] = []

        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            name, row = _parse(number, line)
            if name == "task_shards":
                flush("tasks")  # parents first
            pending[name].append(row)
            if len(pending[name]) >= BATCH:
                flush(name)
        for name in TABLES:
            flush(name)
        return counts

    return store._write(work, direct_ok=False)
