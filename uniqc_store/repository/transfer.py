"""Export and import of a whole store as JSON Lines, streamed both ways.

Each line is ``{"table": NAME, "row": {column: value}}`` with the columns
exactly as stored (JSON payloads stay text), so SQLite -> PostgreSQL -> SQLite
gives identical rows. On the servers an export is one pass over each table
through a server-side cursor, in one snapshot; on SQLite it reads a range of
task ids at a time, each range in one short snapshot (see ``export_jsonl`` for
what that promises). An import writes everything in one transaction: a bad
line raises ``ValueError`` naming it and nothing is written. On SQLite it
upserts a batch at a time; on the servers the rows go through staging tables
and one set-based upsert per table (``staging.py``).

An imported row is checked as ``save()`` / ``save_shard()`` check a record
(``schema.values.check_stored_row``: the same rule for each column, plus what a stored
row needs: payloads that are valid JSON text, stamps that are text), before it
is written, and a shard's task must be in the store or on an earlier line:
nothing enters that the store could not have written or cannot read back.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

from sqlalchemy import Connection, Executable, Select, Table, bindparam, func, select

from uniqc_store.db.executor import Transaction, bulk
from uniqc_store.errors import DatabaseBusyError
from uniqc_store.repository import staging
from uniqc_store.repository.statements import stored, upsert
from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.values import check_stored_row

#: Parents before children, so foreign keys hold at every step of an import.
TABLES: dict[str, Table] = {
    t.name: t for t in (tasks, task_shards, archived_tasks, archived_task_shards)
}
BATCH = 1000
#: Rows a server-side cursor of the servers' export fetches at a time.
STREAM_ROWS = 5000

Progress = Callable[[int], None]


def count_rows(store: TaskStore) -> int:
    """How many rows an export will write."""

    def total(conn: Connection) -> int:
        statements = (select(func.count()).select_from(t) for t in TABLES.values())
        return sum(int(conn.execute(stmt).scalar_one()) for stmt in statements)

    return store._read(total)


#: The two task tables, each with its shard table: an export walks them together.
_FAMILIES = ((tasks, task_shards), (archived_tasks, archived_task_shards))


def _task_page(table: Table, first: bool) -> Select[Any]:
    stmt = select(*stored(table)).order_by(table.c.task_id).limit(BATCH)
    return stmt if first else stmt.where(table.c.task_id > bindparam("after"))


def _shard_range(table: Table, first: bool, last: bool) -> Select[Any]:
    """The shard rows whose task id is in (``:after``, ``:upto``], in key order."""
    key = table.c.uniqc_task_id
    stmt = select(*stored(table)).order_by(*table.primary_key.columns)
    if not first:
        stmt = stmt.where(key > bindparam("after"))
    return stmt if last else stmt.where(key <= bindparam("upto"))


Page = list[tuple[str, dict[str, Any]]]


def _as_dicts(table: Table, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    names = table.columns.keys()
    return [dict(zip(names, row, strict=True)) for row in rows]


def _read_range(conn: Connection, after: str | None) -> tuple[Page, str | None]:
    """The rows of all four tables for the next range of task ids, read in one snapshot.

    The range ends at the smallest last id of a task table that had a full page
    (None: the range runs to the end), so no task table is read past it and each
    range holds at most ``2 * BATCH`` tasks (with their shards).
    """
    first = after is None
    params: dict[str, Any] = {} if first else {"after": after}
    pages = [
        (family, _as_dicts(family[0], conn.execute(_task_page(family[0], first), params)))
        for family in _FAMILIES
    ]
    full = [rows[-1]["task_id"] for _, rows in pages if len(rows) == BATCH]
    upto: str | None = min(full) if full else None
    bounds = {**params, "upto": upto}
    found: Page = []
    for (parent, shards), rows in pages:
        found += [(parent.name, row) for row in rows if upto is None or row["task_id"] <= upto]
        shard_rows = conn.execute(_shard_range(shards, first, upto is None), bounds)
        found += [(shards.name, row) for row in _as_dicts(shards, shard_rows)]
    return found, upto


_encode = json.JSONEncoder(ensure_ascii=False).encode


def _write_line(out: IO[str], name: str, row: dict[str, Any]) -> None:
    """One export line: what ``json.dumps({"table": name, "row": row})`` writes."""
    out.write(f'{{"table": {_encode(name)}, "row": {_encode(row)}}}\n')


def export_jsonl(
    store: TaskStore, out: IO[str], progress: Progress | None = None
) -> dict[str, int]:
    """Write every row of the four tables to ``out``; return counts per table.

    On the servers (``_export_one_pass``) the export is one snapshot. On SQLite
    it walks task ids in ranges of at most ``BATCH`` ids per task table;
    each range (its tasks, archived tasks and both tables' shards) is read in one
    short snapshot of its own and written before the next is read, so no read
    transaction spans the export (on SQLite it would pin the WAL, which then grows
    with every write made meanwhile). What that promises: each task id that
    exists throughout the export is written exactly once per table it is in when
    its range is read, with exactly the shards it has then, even while moves
    between the live and archive tables run (a move keeps the id, and the id's
    range is read once, in one snapshot); a task created or deleted meanwhile is
    in the export or not. The export is not one snapshot of the whole store.
    """
    if store.dialect in staging.ENGINES:
        return _export_one_pass(store, out, progress)
    counts = dict.fromkeys(TABLES, 0)
    after: str | None = None
    while True:
        found, upto = store._read(functools.partial(_read_range, after=after), snapshot=True)
        for name, row in found:
            _write_line(out, name, row)
            counts[name] += 1
        if progress is not None and found:
            progress(len(found))
        if upto is None:
            return counts
        after = upto


def _export_one_pass(store: TaskStore, out: IO[str], progress: Progress | None) -> dict[str, int]:
    """The servers' export: the four tables, parents first, each read once through a
    server-side cursor (``stream_results``: ``STREAM_ROWS`` rows held at a time),
    all in one REPEATABLE READ transaction, so the export is one snapshot of the
    whole store. Not retried (its lines are written as they come), and bounded by
    ``Timeouts.bulk_seconds`` like every block unit."""
    counts = dict.fromkeys(TABLES, 0)
    streaming = {"stream_results": True, "yield_per": STREAM_ROWS}
    with store._executor.reading(snapshot=True) as conn:
        for name, table in TABLES.items():
            names = [c.name for c in table.columns]
            stmt = select(*stored(table)).order_by(*table.primary_key.columns)
            result = conn.execute(stmt, execution_options=streaming)
            for part in result.partitions():
                for row in part:
                    _write_line(out, name, dict(zip(names, row, strict=True)))
                counts[name] += len(part)
                if progress is not None:
                    progress(len(part))
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
    shard = "shard_index" in row
    first = next(check_stored_row(row, shard=shard), None)
    if first is not None:
        key = (row["uniqc_task_id"], row["shard_index"]) if shard else row["task_id"]
        raise ValueError(f"line {line_number}: {first[1]} (in the {name} row {key!r})")
    return name, row


_RUN_AGAIN = (
    "the import was rolled back by a conflict with another writer (a deadlock or a lock "
    "wait): nothing was imported; run it again (its lines are read once, so it is not "
    "retried)"
)


def _no_parent(number: int, shard_index: Any, parent: Any) -> ValueError:
    return ValueError(
        f"line {number}: shard {shard_index!r} of task {parent!r} has no task: "
        f"{parent!r} is neither in the store nor on an earlier tasks line (a shard "
        "comes after its task, as export writes them); nothing was imported"
    )


def _check_parents(
    tx: Transaction, parents: Executable, batch: list[tuple[int, dict[str, Any]]]
) -> None:
    """A shard's task must be in the store (or already written by this import)."""
    ids = sorted({row["uniqc_task_id"] for _, row in batch})
    found = {row[0] for row in tx.fetch(parents, {"ids": ids})}
    for number, row in batch:
        if row["uniqc_task_id"] not in found:
            raise _no_parent(number, row["shard_index"], row["uniqc_task_id"])


Numbered = list[tuple[int, dict[str, Any]]]


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(line number, table, row)`` for each non-blank line, checked (``_parse``)."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield (number, *_parse(number, line))


class _DriverUpsert:
    """A table's upsert compiled once and sent as the driver's ``executemany`` of
    tuples (``exec_driver_sql``: events and echo still see it), sparing SQLAlchemy's
    per-row parameter processing, which the stored form does not need (payloads are
    text already, every value is the column's own type)."""

    def __init__(self, conn: Connection, table: Table) -> None:
        compiled = upsert(table, conn.dialect.name).compile(dialect=conn.dialect)
        self._conn = conn
        self._sql = str(compiled)
        order = tuple(compiled.positiontup or ())
        self._values = operator.itemgetter(*order)  # a row's values, in the SQL's order

    def run(self, batch: Numbered) -> None:
        values = self._values
        self._conn.exec_driver_sql(self._sql, [values(row) for _, row in batch])


def _import_by_batches(
    tx: Transaction, store: TaskStore, lines: Iterable[str], progress: Progress | None
) -> dict[str, int]:
    """SQLite: ``executemany`` upserts a batch at a time per table.

    A shard's task must be on an earlier line or in the store before any later
    line's task is written: a shard whose task is a pending (earlier) line passes
    at once; the others are looked up in the store in one query per batch, before
    pending tasks are written (``verify``). Tasks are written before the shards
    that follow them, so foreign keys hold at every step.
    """
    statements = {name: _DriverUpsert(tx.connection, table) for name, table in TABLES.items()}
    counts = dict.fromkeys(TABLES, 0)
    pending: dict[str, Numbered] = {name: [] for name in TABLES}
    pending_tasks: set[str] = set()  # the ids of the pending tasks lines
    unverified: Numbered = []  # pending shards whose task must be in the store

    def verify() -> None:
        if unverified:
            _check_parents(tx, store._sql.parents_among, unverified)
            unverified.clear()

    def flush(name: str) -> None:
        if name == "tasks":
            verify()  # against the store as it was before these (later) lines
            pending_tasks.clear()
        elif name == "task_shards":
            verify()
            flush("tasks")  # parents first
        batch = pending[name]
        if batch:
            statements[name].run(batch)
            counts[name] += len(batch)
            if progress is not None:
                progress(len(batch))
            pending[name] = []

    for number, name, row in _numbered(lines):
        pending[name].append((number, row))
        if name == "tasks":
            pending_tasks.add(row["task_id"])
        elif name == "task_shards" and row["uniqc_task_id"] not in pending_tasks:
            unverified.append((number, row))
        if len(pending[name]) >= BATCH:
            flush(name)
    for name in TABLES:
        flush(name)
    return counts


def _import_staged(
    tx: Transaction, lines: Iterable[str], progress: Progress | None
) -> dict[str, int]:
    """Servers: every line into the staging tables (``staging.py``), the shards' tasks
    checked in one query, then one upsert per table, parents first."""
    counts = dict.fromkeys(TABLES, 0)
    pending: dict[str, Numbered] = {name: [] for name in TABLES}
    with staging.stages(tx.connection, TABLES.values()) as stages:

        def load(name: str) -> None:
            stages[name].load(pending[name])
            counts[name] += len(pending[name])
            if progress is not None and pending[name]:
                progress(len(pending[name]))
            pending[name] = []

        for number, name, row in _numbered(lines):
            pending[name].append((number, row))
            if len(pending[name]) >= staging.CHUNK:
                load(name)
        for name in TABLES:
            load(name)
        if counts["task_shards"]:
            missing = staging.missing_parent(
                tx.connection, stages["task_shards"], stages["tasks"], tasks
            )
            if missing is not None:
                raise _no_parent(*missing)
        for name in TABLES:
            if counts[name]:
                stages[name].merge()
    return counts


def import_jsonl(
    store: TaskStore, lines: Iterable[str], progress: Progress | None = None
) -> dict[str, int]:
    """Upsert every exported row from ``lines`` in one transaction; return counts.

    Every row is checked before it is written and the first bad line is a
    ``ValueError`` naming it; nothing is written then (all or nothing). On the
    servers the rows go through staging tables (``staging.py``): a shard whose task
    is missing is found once every line is read, so with several bad lines the
    one named may be another than on SQLite, which checks batch by batch.
    """
    staged = store.dialect in staging.ENGINES
    attempts = 0

    def work(tx: Transaction) -> dict[str, int]:
        nonlocal attempts
        attempts += 1
        if attempts > 1:  # the executor retries a transient error: the lines are gone
            raise DatabaseBusyError(_RUN_AGAIN)
        if staged:
            return _import_staged(tx, lines, progress)
        return _import_by_batches(tx, store, lines, progress)

    with bulk():
        return store._write(work, direct_ok=False)
