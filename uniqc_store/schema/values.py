"""What may be stored: the check of every column, and records made rows.

Every field of a record is checked here before any SQL runs (by its role's
check, ``schema/validation.py``), so a bad record raises ``TypeError`` /
``ValueError`` and nothing is written. JSON payloads escape NUL and are fine.

Each plain column has one check (``TASK_COLUMN_CHECKS``, ``SHARD_COLUMN_CHECKS``),
used for a record being saved and for a stored row being imported or checked
(``check_stored_row``): a row enters only if ``save()`` could have written it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from uniqc_store.records import TaskInfo, TaskShard
from uniqc_store.schema.payload import check_depth, decode_for_check, encode_json
from uniqc_store.schema.validation import (
    free_text,
    metadata_dict,
    optional_free_text,
    stored_int,
    stored_key,
    stored_key_text,
    stored_status,
)

Check = Callable[[Any, str], Any]

#: The one check of each plain column of a task row, for a ``TaskInfo`` being saved
#: and for a stored row being imported or checked (payloads and stamps aside).
TASK_COLUMN_CHECKS: dict[str, Check] = {
    "task_id": stored_key,
    "backend": stored_key_text,
    "status": stored_status,
    "shots": stored_int,
    "submit_time": stored_key_text,
    "error_message": optional_free_text,
}
#: The same for a shard row (``submit_time`` is not an indexed key there).
SHARD_COLUMN_CHECKS: dict[str, Check] = {
    "uniqc_task_id": stored_key,
    "shard_index": stored_int,
    "platform_task_id": stored_key,
    "backend": stored_key_text,
    "circuit_count": stored_int,
    "sub_index_offset": stored_int,
    "status": stored_status,
    "error_message": optional_free_text,
    "submit_time": free_text,
}
# the record's attributes have the columns' names; the field names are built once
_TASK_CHECKS = tuple((c, check, f"TaskInfo.{c}") for c, check in TASK_COLUMN_CHECKS.items())
_SHARD_CHECKS = tuple((c, check, f"TaskShard.{c}") for c, check in SHARD_COLUMN_CHECKS.items())


def task_to_row(info: TaskInfo, now: str) -> dict[str, Any]:
    """The ``tasks`` row for ``info``, stamped ``update_time = now``."""
    if not isinstance(info, TaskInfo):
        raise TypeError(f"expected a TaskInfo, not {type(info).__name__}")
    row = {column: check(getattr(info, column), field) for column, check, field in _TASK_CHECKS}
    owner = f"task {row['task_id']!r}"
    metadata = metadata_dict(info.metadata if info.metadata is not None else {}, owner)
    row["update_time"] = now
    row["result_json"] = (
        None if info.result is None else encode_json(info.result, field="result", owner=owner)
    )
    row["metadata_json"] = encode_json(dict(metadata), field="metadata", owner=owner)
    return row


def shard_to_row(shard: TaskShard, now: str) -> dict[str, Any]:
    """The ``task_shards`` row for ``shard``, stamped ``update_time = now``."""
    if not isinstance(shard, TaskShard):
        raise TypeError(f"expected a TaskShard, not {type(shard).__name__}")
    row = {column: check(getattr(shard, column), field) for column, check, field in _SHARD_CHECKS}
    owner = f"shard {row['shard_index']} of task {row['uniqc_task_id']!r}"
    row["update_time"] = now
    row["result_json"] = (
        None if shard.result is None else encode_json(shard.result, field="result", owner=owner)
    )
    return row


# -- stored rows (an import's lines, rows another tool wrote) -----------------


def check_json_text(
    text: Any, *, field: str, owner: str, optional: bool, mapping: bool = False
) -> None:
    """A stored payload: JSON text that ``encode_json`` could have written (strict, at
    most ``MAX_JSON_DEPTH`` deep, valid Unicode; an object where ``mapping``), or None
    where ``optional``. The text is kept as it is: only what it holds is checked."""
    if text is None and optional:
        return
    if not isinstance(text, str):
        raise TypeError(f"{field} of {owner} must be JSON text, not {type(text).__name__}")
    check_depth(text, field=field, owner=owner)
    try:
        value, sure = decode_for_check(text)
    except ValueError as exc:
        raise ValueError(f"{field} of {owner} is not valid JSON text: {exc}") from None
    if mapping:
        metadata_dict(value, owner)
    if not sure:  # else encoding it again cannot fail: skipped
        encode_json(value, field=field, owner=owner)  # save()'s rules for what the value holds


#: Stamps a stored row carries that a record's save() sets itself: text, not NULL.
_STAMPS = ("update_time", "archived_at")


def _result_text(text: Any, field: str, owner: str) -> None:
    check_json_text(text, field=field, owner=owner, optional=True)


def _metadata_text(text: Any, field: str, owner: str) -> None:
    check_json_text(text, field=field, owner=owner, optional=False, mapping=True)


#: Every check of a stored row, in the order they are reported: the plain columns
#: and the stamps (``check(value, column)``; a stamp where the row has it), then the
#: payloads (``check(text, column, owner)``). Built once, run per row (an import's
#: hot path).
_STORED_CHECKS: dict[bool, tuple[tuple[tuple[str, Check], ...], tuple[tuple[str, Any], ...]]] = {
    shard: (
        (*checks.items(), *((c, free_text) for c in _STAMPS)),
        (("result_json", _result_text), *(() if shard else (("metadata_json", _metadata_text),))),
    )
    for shard, checks in ((False, TASK_COLUMN_CHECKS), (True, SHARD_COLUMN_CHECKS))
}


def check_stored_row(row: Mapping[str, Any], *, shard: bool) -> Iterator[tuple[str, str]]:
    """``(column, what is wrong)`` for each column of a stored row (every column, payloads
    as JSON text) that ``save()`` / ``save_shard()`` could not have written."""
    if shard:
        owner = f"shard {row['shard_index']!r} of task {row['uniqc_task_id']!r}"
    else:
        owner = f"task {row['task_id']!r}"
    plain, payloads = _STORED_CHECKS[shard]
    for column, check in plain:
        if column in row or column not in _STAMPS:
            try:
                check(row[column], column)
            except (TypeError, ValueError) as exc:
                yield column, str(exc)
    for column, payload_check in payloads:
        try:
            payload_check(row[column], column, owner)
        except (TypeError, ValueError) as exc:
            yield column, str(exc)
