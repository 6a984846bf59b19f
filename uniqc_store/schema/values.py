"""What may be stored: the check of every column, and records made rows.

Everything a caller passes is checked here before any SQL runs, so a bad
record raises ``TypeError`` / ``ValueError`` and nothing is written. Plain
text may not hold NUL on any engine, since PostgreSQL cannot store it (JSON
payloads escape it and are fine).

Each plain column has one check (``TASK_COLUMN_CHECKS``, ``SHARD_COLUMN_CHECKS``),
used for a record being saved and for a stored row being imported or checked
(``check_stored_row``): a row enters only if ``save()`` could have written it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from uniqc_store.records import (
    MAX_KEY_LENGTH,
    STATUS_VALUES,
    TaskInfo,
    TaskShard,
    normalize_status,
)
from uniqc_store.schema.payload import (
    _check_encodable,
    check_depth,
    decode_for_check,
    encode_json,
)


def check_text(value: Any, field: str, *, optional: bool = False) -> str | None:
    """``value`` if it is a string (or None when optional), else a TypeError."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise TypeError(f"{field} must be {kind}, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters (PostgreSQL cannot store them)")
    if not value.isascii():
        _check_encodable(value, field)
    return value


def check_key(value: Any, field: str) -> str:
    """An id, backend or platform id a caller looks up: a string every engine can compare.

    Checked before any SQL: MySQL compares ``'uqt_...' = 0`` as true, so a
    non-string would match every row there and none elsewhere.
    """
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # the common case, checked in one pass
    text = check_text(value, field)
    assert text is not None
    return text


def check_optional_key(value: Any, field: str) -> str | None:
    """``check_key`` for an optional filter (None means no filter)."""
    return None if value is None else check_key(value, field)


def check_id(value: Any, field: str) -> str:
    """A non-empty string id."""
    text = check_text(value, field)
    if not text:
        raise ValueError(f"{field} must not be empty")
    return text


#: The range of an INTEGER on PostgreSQL and MySQL (columns, and the LIMIT and
#: OFFSET binds); SQLite takes more and is held to it, so every engine agrees.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def check_int(value: Any, field: str) -> int:
    """An int (bools are refused: ``True`` is not a shot count) in the INTEGER range;
    outside it, a ValueError on every engine."""
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value  # the common case
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{field} must be between {INT_MIN} and {INT_MAX}, not {value}")
    return value


def _fits_a_key(text: str, field: str) -> str:
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"{field} must be at most {MAX_KEY_LENGTH} characters, not {len(text)}")
    return text


def check_key_text(value: Any, field: str) -> str:
    """A backend or key timestamp to write (may be empty): at most ``MAX_KEY_LENGTH`` characters."""
    if (
        type(value) is str
        and len(value) <= MAX_KEY_LENGTH
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, checked in one pass (as ``check_key``)
    text = check_text(value, field)
    assert text is not None
    return _fits_a_key(text, field)


def check_stored_key(value: Any, field: str) -> str:
    """A non-empty id to write: at most ``MAX_KEY_LENGTH`` characters."""
    if (
        type(value) is str
        and 0 < len(value) <= MAX_KEY_LENGTH
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, checked in one pass (as ``check_key``)
    return _fits_a_key(check_id(value, field), field)


def check_optional_text(value: Any, field: str) -> str | None:
    """Free text that may be None (``error_message``)."""
    if value is None:
        return None
    return check_text(value, field, optional=True)  # its message: "a string or None"


def check_status(value: Any, field: str) -> str:
    """A status, as a column check (``normalize_status``: its messages name the status)."""
    if type(value) is str and value in STATUS_VALUES:
        return value  # the common case (``normalize_status`` would return it as it is)
    return normalize_status(value)


def check_metadata(value: Any, owner: str) -> Mapping[str, Any]:
    """Metadata is a JSON object (a dict), whatever else it holds."""
    if type(value) is not dict and not isinstance(value, Mapping):  # a dict: no ABC check
        raise TypeError(f"metadata of {owner} must be a dict, not {type(value).__name__}")
    return value


Check = Callable[[Any, str], Any]

#: The one check of each plain column of a task row, for a ``TaskInfo`` being saved
#: and for a stored row being imported or checked (payloads and stamps aside).
TASK_COLUMN_CHECKS: dict[str, Check] = {
    "task_id": check_stored_key,
    "backend": check_key_text,
    "status": check_status,
    "shots": check_int,
    "submit_time": check_key_text,
    "error_message": check_optional_text,
}
#: The same for a shard row (``submit_time`` is not an indexed key there).
SHARD_COLUMN_CHECKS: dict[str, Check] = {
    "uniqc_task_id": check_stored_key,
    "shard_index": check_int,
    "platform_task_id": check_stored_key,
    "backend": check_key_text,
    "circuit_count": check_int,
    "sub_index_offset": check_int,
    "status": check_status,
    "error_message": check_optional_text,
    "submit_time": check_text,
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
    metadata = check_metadata(info.metadata if info.metadata is not None else {}, owner)
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
        check_metadata(value, owner)
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
        (*checks.items(), *((c, check_text) for c in _STAMPS)),
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
