"""Rows to records, tolerant of rows another tool wrote.

A row whose columns all hold their types takes the fast path (the common
case: decoding is most of the cost of ``list()``). Any other is read column by
column, and each column keeps the most faithful reading there is:

- ``result_json`` / ``metadata_json``: broken JSON reads as
  ``{"_invalid_json": "<the stored text>"}`` (``payload.decode_json``); a BLOB as
  its UTF-8 text, then the same;
- other text columns (backend, status, timestamps, error message, platform id):
  a BLOB reads as its UTF-8 text, undecodable bytes backslash-escaped; an
  unknown status as it is; NULL where the column is NOT NULL has no reading;
- INTEGER columns (shots, shard index, circuit count, offset): decimal text or an
  integral float (SQLite's type affinity keeps ``'many'`` or ``1.5`` as they are)
  reads as that integer; anything else (``'many'``, ``1.5``, NULL, a BLOB) has none;
- primary keys (``task_id``, a shard's ``uniqc_task_id``): only text, since an id
  of another type could not be looked up, archived or deleted again.

A column with no reading raises ``UnreadableRowError`` (a ``StoreError``) naming
the table, the row's key and the column, never a made-up value and never a bare
``ValueError``: the calls that read that row (``get()``, and a ``list()`` or
``iter_tasks()`` page that holds it) fail with it, every other call works, and
``uniqc-store check-rows`` lists such rows.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

from uniqc_store.errors import UnreadableRowError
from uniqc_store.records import TaskInfo, TaskShard
from uniqc_store.schema.payload import as_text, decode_json

_DECIMAL = re.compile(r"\s*[+-]?[0-9]{1,4000}\s*", re.ASCII)  # int() reads at most 4300 digits
_FIX = (
    "another tool wrote it. Fix or delete the row "
    "(`uniqc-store check-rows` lists every row the store cannot read)"
)


def _unreadable(table: str, key: Any, column: str, value: Any, wanted: str) -> UnreadableRowError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return UnreadableRowError(
        f"{table} row {key!r}: {column} holds {shown}, which is not {wanted}; {_FIX}",
        table=table,
        key=key,
        column=column,
    )


def read_int(value: Any, table: str, key: Any, column: str) -> int:
    """An INTEGER column as read: an int; decimal text or an integral float (which
    SQLite's type affinity or another schema may hand back) is that int."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise _unreadable(table, key, column, value, "an integer")


def read_text(value: Any, table: str, key: Any, column: str) -> str:
    """A NOT NULL text column as read: text; another type as its text (a BLOB as UTF-8)."""
    if type(value) is str:
        return value
    if value is None:
        raise _unreadable(table, key, column, value, "text (the column is NOT NULL)")
    return as_text(value)


def read_optional_text(value: Any, table: str, key: Any, column: str) -> str | None:
    """A text column that may be NULL (``error_message``), as read."""
    return None if value is None else read_text(value, table, key, column)


def read_key(value: Any, table: str, column: str) -> str:
    """A primary-key column as read: only text is an id the store can look up again."""
    if type(value) is not str:
        raise _unreadable(table, value, column, value, "a text id")
    return value


_TASK_FIELDS = (
    "task_id", "backend", "status", "shots", "submit_time", "update_time",
    "result_json", "metadata_json", "error_message",
)  # fmt: skip


class TaskDecoder:
    """Builds TaskInfo records from the positional rows of one task table.

    Decoding is most of the cost of ``list()``, so the column positions are
    worked out once per table, and a row whose columns all have their types
    takes the fast path; any other is read column by column (``read_int``,
    ``read_text``, ``read_key``): tolerantly, or an ``UnreadableRowError``.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        at = {name: i for i, name in enumerate(columns)}
        # the live table's rows already come in this order: no reordering needed
        self._in_order = tuple(columns) == _TASK_FIELDS
        self._pick = operator.itemgetter(*(at[name] for name in _TASK_FIELDS))
        self._archived_at = at.get("archived_at")
        self.table = "tasks" if self._archived_at is None else "archived_tasks"

    def __call__(self, row: Sequence[Any]) -> TaskInfo:
        fields = row if self._in_order else self._pick(row)
        task_id, backend, status, shots, submit, update, result, metadata, error = fields
        archived = None if self._archived_at is None else row[self._archived_at]
        if not (
            type(shots) is int
            and type(task_id) is type(backend) is type(status) is type(submit) is str
            and type(update) is str
            and (error is None or type(error) is str)
            and (self._archived_at is None or type(archived) is str)
        ):
            return self._tolerant(fields, archived)
        return TaskInfo(
            task_id,
            backend,
            status,
            decode_json(result, None),
            shots,
            submit,
            update,
            decode_json(metadata, {}),
            error,
            archived,
        )

    def _archived(self, value: Any, task_id: str) -> str | None:
        if self._archived_at is None:
            return None
        return read_text(value, self.table, task_id, "archived_at")

    def _tolerant(self, fields: Sequence[Any], archived: Any) -> TaskInfo:
        table = self.table
        task_id = read_key(fields[0], table, "task_id")
        backend, status, shots, submit, update, result, metadata, error = fields[1:]
        return TaskInfo(
            task_id,
            read_text(backend, table, task_id, "backend"),
            read_text(status, table, task_id, "status"),
            decode_json(result, None),
            read_int(shots, table, task_id, "shots"),
            read_text(submit, table, task_id, "submit_time"),
            read_text(update, table, task_id, "update_time"),
            decode_json(metadata, {}),
            read_optional_text(error, table, task_id, "error_message"),
            None
            if self._archived_at is None
            else read_text(archived, table, task_id, "archived_at"),
        )


def row_to_shard(row: Sequence[Any]) -> TaskShard:
    """A TaskShard from a shard row (the shard tables' first eleven columns, in order;
    an archived shard's row has a twelfth, ``archived_at``)."""
    parent, index, platform, backend, circuits, offset, status, result, error, submit, update = row[
        :11
    ]
    if not (
        type(parent) is str
        and type(index) is int
        and type(platform) is str
        and type(backend) is str
        and type(circuits) is int
        and type(offset) is int
        and type(status) is str
        and (error is None or type(error) is str)
        and type(submit) is str
        and type(update) is str
    ):
        return _tolerant_shard(row)
    return TaskShard(
        parent,
        index,
        platform,
        backend,
        circuits,
        offset,
        status,
        decode_json(result, None),
        error,
        submit,
        update,
    )


def _tolerant_shard(row: Sequence[Any]) -> TaskShard:
    table = "archived_task_shards" if len(row) > 11 else "task_shards"
    parent = read_key(row[0], table, "uniqc_task_id")
    index = read_int(row[1], table, (parent, row[1]), "shard_index")
    key = (parent, index)
    return TaskShard(
        uniqc_task_id=parent,
        shard_index=index,
        platform_task_id=read_text(row[2], table, key, "platform_task_id"),
        backend=read_text(row[3], table, key, "backend"),
        circuit_count=read_int(row[4], table, key, "circuit_count"),
        sub_index_offset=read_int(row[5], table, key, "sub_index_offset"),
        status=read_text(row[6], table, key, "status"),
        result=decode_json(row[7], None),
        error_message=read_optional_text(row[8], table, key, "error_message"),
        submit_time=read_text(row[9], table, key, "submit_time"),
        update_time=read_text(row[10], table, key, "update_time"),
    )
