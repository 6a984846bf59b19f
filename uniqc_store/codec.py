"""Records to rows and back: validation, JSON encoding, and tolerant decoding.

Everything a caller passes is checked here before any SQL runs, so a bad
record raises ``TypeError`` / ``ValueError`` and nothing is written. Plain
text may not hold NUL on any engine, since PostgreSQL cannot store it (JSON
payloads escape it and are fine).

A row written by another tool with broken JSON in ``result_json`` or
``metadata_json`` does not make reads fail: the field reads as
``{"_invalid_json": "<the stored text>"}`` so nothing is hidden or lost.
"""

from __future__ import annotations

import json
import json.scanner
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .records import TaskInfo, TaskShard, normalize_status

INVALID_JSON_KEY = "_invalid_json"
#: The deepest nesting of dicts and lists a payload may have. Python's JSON
#: decoder, FastAPI's encoder and the redaction walk all recurse per level:
#: a much deeper document is saved fine but cannot be read back or served.
MAX_JSON_DEPTH = 100


_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_INNERMOST = re.compile(r"\[[^\[\]{}]*+\]|\{[^\[\]{}]*+\}")


def _too_deep(field: str, owner: str) -> ValueError:
    return ValueError(
        f"{field} of {owner} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it "
        "(the store keeps at most that, so that every reader can decode and serve it)"
    )


def check_depth(text: str, *, field: str, owner: str) -> None:
    """Refuse JSON text nested deeper than :data:`MAX_JSON_DEPTH`.

    Works on the encoded text at C speed: a document with few brackets is
    shallow enough by count alone; otherwise strings are dropped and each
    pass removes the innermost arrays and objects, one level per pass.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    rest = _JSON_STRING.sub("", text)
    for _ in range(MAX_JSON_DEPTH + 1):  # the last pass must find nothing left
        rest, removed = _INNERMOST.subn("", rest)
        if not removed:
            return
    raise _too_deep(field, owner)


def encode_json(value: Any, *, field: str, owner: str) -> str:
    """Strict JSON (no NaN/Infinity), at most :data:`MAX_JSON_DEPTH` deep, for every engine."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        text = None  # far too deep to encode at all: refused below, outside the handler
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{field} of {owner} cannot be stored as JSON: {exc}") from None
    if text is None:
        raise _too_deep(field, owner)
    check_depth(text, field=field, owner=owner)
    _check_encodable(text, f"{field} of {owner}")
    return text


def _check_encodable(text: str, field: str) -> None:
    """Refuse lone surrogates: no engine's driver can encode them as UTF-8."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} holds a lone surrogate (not valid Unicode); it cannot be stored"
        ) from None


_decoder = json.JSONDecoder()
_loads = _decoder.decode
# The C scanner behind ``decode``, without its two whitespace regexes: it
# halves the cost of the small documents a listing decodes by the hundred.
_scan = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]  # typeshed expects a scanner


def decode_json(raw: str | None, empty: Any) -> Any:
    """Parse a stored JSON column; broken text reads as ``{"_invalid_json": raw}``."""
    if not raw:
        return empty
    try:
        value, end = _scan(raw, 0)
        if end == len(raw):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass  # whitespace around the document, or broken: the full decoder decides
    try:
        return _loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
        return {INVALID_JSON_KEY: raw}


def check_text(value: Any, field: str, *, optional: bool = False) -> str | None:
    """``value`` if it is a string (or None when optional), else a TypeError."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise TypeError(f"{field} must be {kind}, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters (PostgreSQL cannot store them)")
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


#: Longest id, backend or key timestamp a row may hold: MySQL's key columns are
#: VARCHAR(255); checked on every engine, so a value fits everywhere or nowhere.
MAX_KEY_LENGTH = 255


#: The range of an INTEGER on PostgreSQL and MySQL (columns, and the LIMIT and
#: OFFSET binds); SQLite takes more and is held to it, so every engine agrees.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def check_int(value: Any, field: str) -> int:
    """An int (bools are refused: ``True`` is not a shot count) in the INTEGER range;
    outside it, a ValueError on every engine."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{field} must be between {INT_MIN} and {INT_MAX}, not {value}")
    return value


def check_key_text(value: Any, field: str) -> str:
    """A backend or key timestamp to write (may be empty): at most ``MAX_KEY_LENGTH`` characters."""
    text = check_text(value, field)
    assert text is not None
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"{field} must be at most {MAX_KEY_LENGTH} characters, not {len(text)}")
    return text


def check_stored_key(value: Any, field: str) -> str:
    """A non-empty id, backend or key timestamp to write: at most ``MAX_KEY_LENGTH`` characters."""
    text = check_id(value, field)
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"{field} must be at most {MAX_KEY_LENGTH} characters, not {len(text)}")
    return text


def task_to_row(info: TaskInfo, now: str) -> dict[str, Any]:
    """The ``tasks`` row for ``info``, stamped ``update_time = now``."""
    if not isinstance(info, TaskInfo):
        raise TypeError(f"expected a TaskInfo, not {type(info).__name__}")
    task_id = check_stored_key(info.task_id, "TaskInfo.task_id")
    owner = f"task {task_id!r}"
    metadata = info.metadata if info.metadata is not None else {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata of {owner} must be a dict, not {type(metadata).__name__}")
    return {
        "task_id": task_id,
        "backend": check_key_text(info.backend, "TaskInfo.backend"),
        "status": normalize_status(info.status),
        "shots": check_int(info.shots, "TaskInfo.shots"),
        "submit_time": check_key_text(info.submit_time, "TaskInfo.submit_time"),
        "update_time": now,
        "result_json": None
        if info.result is None
        else encode_json(info.result, field="result", owner=owner),
        "metadata_json": encode_json(dict(metadata), field="metadata", owner=owner),
        "error_message": check_text(info.error_message, "TaskInfo.error_message", optional=True),
    }


_TASK_FIELDS = (
    "task_id", "backend", "status", "shots", "submit_time", "update_time",
    "result_json", "metadata_json", "error_message",
)  # fmt: skip


class TaskDecoder:
    """Builds TaskInfo records from the positional rows of one task table.

    Decoding is most of the cost of ``list()``, so the column positions are
    worked out once per table.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        at = {name: i for i, name in enumerate(columns)}
        # the live table's rows already come in this order: no reordering needed
        self._in_order = tuple(columns) == _TASK_FIELDS
        self._pick = operator.itemgetter(*(at[name] for name in _TASK_FIELDS))
        self._archived_at = at.get("archived_at")

    def __call__(self, row: Sequence[Any]) -> TaskInfo:
        fields = row if self._in_order else self._pick(row)
        task_id, backend, status, shots, submit, update, result, metadata, error = fields
        return TaskInfo(
            task_id,
            backend,
            status,
            decode_json(result, None),
            shots if type(shots) is int else int(shots),  # another tool may have stored text
            submit,
            update,
            decode_json(metadata, {}),
            error,
            None if self._archived_at is None else row[self._archived_at],
        )


def shard_to_row(shard: TaskShard, now: str) -> dict[str, Any]:
    """The ``task_shards`` row for ``shard``, stamped ``update_time = now``."""
    if not isinstance(shard, TaskShard):
        raise TypeError(f"expected a TaskShard, not {type(shard).__name__}")
    parent = check_stored_key(shard.uniqc_task_id, "TaskShard.uniqc_task_id")
    index = check_int(shard.shard_index, "TaskShard.shard_index")
    owner = f"shard {index} of task {parent!r}"
    return {
        "uniqc_task_id": parent,
        "shard_index": index,
        "platform_task_id": check_stored_key(shard.platform_task_id, "TaskShard.platform_task_id"),
        "backend": check_key_text(shard.backend, "TaskShard.backend"),
        "circuit_count": check_int(shard.circuit_count, "TaskShard.circuit_count"),
        "sub_index_offset": check_int(shard.sub_index_offset, "TaskShard.sub_index_offset"),
        "status": normalize_status(shard.status),
        "result_json": None
        if shard.result is None
        else encode_json(shard.result, field="result", owner=owner),
        "error_message": check_text(shard.error_message, "TaskShard.error_message", optional=True),
        "submit_time": check_text(shard.submit_time, "TaskShard.submit_time"),
        "update_time": now,
    }


def row_to_shard(row: Sequence[Any]) -> TaskShard:
    """A TaskShard from a shard row (the shard tables' first eleven columns, in order)."""
    return TaskShard(
        uniqc_task_id=row[0],
        shard_index=int(row[1]),
        platform_task_id=row[2],
        backend=row[3],
        circuit_count=int(row[4]),
        sub_index_offset=int(row[5]),
        status=row[6],
        result=decode_json(row[7], None),
        error_message=row[8],
        submit_time=row[9],
        update_time=row[10],
    )
