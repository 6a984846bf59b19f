"""Rows another tool wrote that the store cannot read back, or could not have written.

``uniqc-store check-rows`` walks the four tables in keyset batches, each batch
one read unit of the store's executor (a SQLite writer waits for one batch at
most), and checks every row twice:

- as an import checks a line (``schema.values.check_stored_row``: the rules ``save()``
  applies, column by column): a row that fails is readable, but ``save()`` could
  not have written it, so an export holding it would not import;
- as reads decode it (``decoding``): a column with no reading makes ``get()``
  and every listing page holding the row raise ``UnreadableRowError``.

Rows whose key is NULL (SQLite lets another tool write them) are not reachable
by a keyset: the first ``BATCH`` of them are read in a pass of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, or_, select, tuple_

from uniqc_store.errors import UnreadableRowError
from uniqc_store.repository.statements import stored
from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.decoding import TaskDecoder, row_to_shard
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.values import check_stored_row

BATCH = 1000
#: Columns whose values a report never shows: payloads and free text may hold credentials.
_PRIVATE = frozenset({"result_json", "metadata_json", "error_message"})


@dataclass(frozen=True)
class RowProblem:
    """One column of one stored row that the store's rules refuse."""

    table: str
    key: tuple[Any, ...]  #: the row's primary key, as stored
    column: str
    problem: str
    unreadable: (
        bool  #: reads of the row raise ``UnreadableRowError`` (else: only import refuses it)
    )
    value: Any  #: the stored value (None for payload and free-text columns: never shown)


def _decoders() -> dict[Table, Callable[[Sequence[Any]], object]]:
    return {
        tasks: TaskDecoder([c.name for c in tasks.columns]),
        task_shards: row_to_shard,
        archived_tasks: TaskDecoder([c.name for c in archived_tasks.columns]),
        archived_task_shards: row_to_shard,
    }


class RowScan:
    """Iterate over the problems of every row; ``rows`` counts the rows read so far."""

    def __init__(self, store: TaskStore, batch: int = BATCH) -> None:
        self._store = store
        self._batch = batch
        self.rows = 0

    def __iter__(self) -> Iterator[RowProblem]:
        for table, decode in _decoders().items():
            for row in self._rows(table):
                self.rows += 1
                yield from _problems(table, decode, row)

    def _rows(self, table: Table) -> Iterator[Sequence[Any]]:
        keys = list(table.primary_key.columns)
        base = select(*stored(table)).order_by(*keys).limit(self._batch)
        yield from self._fetch(base.where(or_(*(k.is_(None) for k in keys))))
        known = base.where(and_(*(k.is_not(None) for k in keys)))
        width = len(keys)
        rows = self._fetch(known)
        while rows:
            yield from rows
            if len(rows) < self._batch:
                return
            rows = self._fetch(known.where(tuple_(*keys) > tuple_(*rows[-1][:width])))

    def _fetch(self, stmt: Select[Any]) -> list[Sequence[Any]]:
        def read(conn: Connection) -> list[Sequence[Any]]:
            return list(conn.execute(stmt).all())

        return self._store._read(read)


def _problems(
    table: Table, decode: Callable[[Sequence[Any]], object], row: Sequence[Any]
) -> Iterator[RowProblem]:
    values = dict(zip(table.columns.keys(), row, strict=True))
    key = tuple(values[c.name] for c in table.primary_key.columns)
    try:
        decode(row)
        unreadable: UnreadableRowError | None = None
    except UnreadableRowError as exc:
        unreadable = exc
    found = list(check_stored_row(values, shard="shard_index" in values))
    if unreadable is not None and unreadable.column not in {column for column, _ in found}:
        found.append((unreadable.column, str(unreadable)))
    for column, problem in found:
        yield RowProblem(
            table=table.name,
            key=key,
            column=column,
            problem=problem,
            unreadable=unreadable is not None and unreadable.column == column,
            value=None if column in _PRIVATE else values[column],
        )
