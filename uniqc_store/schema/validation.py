"""What a caller's value may be, by its role, and the bounds those roles are held to.

One check per role, so a rule is written once and said the same way everywhere:

- ``lookup_key`` / ``optional_lookup_key`` / ``lookup_keys``: an id, backend or
  platform id a call looks up (any string every engine can compare);
- ``stored_key``: a non-empty id to write (``task_id``, ``uniqc_task_id``,
  ``platform_task_id``), at most ``MAX_KEY_LENGTH`` characters;
- ``stored_key_text``: an indexed text to write that may be empty (``backend``, a
  key timestamp), at most ``MAX_KEY_LENGTH`` characters;
- ``free_text`` / ``optional_free_text``: text of any length (messages, stamps);
- ``stored_int``: an integer column value, in the INTEGER range (``INT_MIN``..``INT_MAX``);
- ``row_count``: a non-negative ``stored_int`` (``limit``, ``offset``, ``keep_last``);
  ``int_in_range``: one between two bounds (page and batch sizes);
- ``age_in_hours``: an age in hours, from 0 to below ``MAX_HOURS``;
- ``flag``: True or False; ``stored_status``: a status to write; ``metadata_dict``.

Each raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one
out of bounds, before any SQL runs, so nothing is written. Plain text may not hold
NUL on any engine, since PostgreSQL cannot store it. The REST API builds its own
bounds from the constants here, so a value it takes is one the store takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from uniqc_store.records import (
    MAX_HOURS,
    MAX_JSON_DEPTH,
    MAX_KEY_LENGTH,
    STATUS_VALUES,
    normalize_status,
)
from uniqc_store.schema.payload import _check_encodable

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_BATCH_SIZE",
    "MAX_HOURS",
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "MAX_PAGE_SIZE",
    "age_in_hours",
    "flag",
    "free_text",
    "int_in_range",
    "lookup_key",
    "lookup_keys",
    "metadata_dict",
    "optional_free_text",
    "optional_lookup_key",
    "row_count",
    "stored_int",
    "stored_key",
    "stored_key_text",
    "stored_status",
]

#: The range of an INTEGER on PostgreSQL and MySQL (columns, and the LIMIT and
#: OFFSET binds); SQLite takes more and is held to it, so every engine agrees.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: The largest page ``purge_archived`` reads and deletes at once.
MAX_BATCH_SIZE = 100_000
#: The largest page ``list_page`` / ``list_archived_page`` read at once.
MAX_PAGE_SIZE = 100_000


# -- text ----------------------------------------------------------------------


def free_text(value: Any, field: str) -> str:
    """Text of any length every engine can store: no NUL, no lone surrogate."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters (PostgreSQL cannot store them)")
    if not value.isascii():
        _check_encodable(value, field)
    return value


def optional_free_text(value: Any, field: str) -> str | None:
    """``free_text`` that may be None (``error_message``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string or None, not {type(value).__name__}")
    return free_text(value, field)


# -- keys ----------------------------------------------------------------------


def lookup_key(value: Any, field: str) -> str:
    """An id, backend or platform id a caller looks up: a string every engine can compare.

    Checked before any SQL: MySQL compares ``'uqt_...' = 0`` as true, so a
    non-string would match every row there and none elsewhere. No length bound:
    a longer key than any row holds simply finds nothing.
    """
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # the common case, checked in one pass
    return free_text(value, field)


def optional_lookup_key(value: Any, field: str) -> str | None:
    """``lookup_key`` for an optional filter (None means no filter)."""
    return None if value is None else lookup_key(value, field)


def lookup_keys(values: Iterable[str], field: str) -> list[str]:
    """Many ids to look up (``archive_many``, ``delete_many``), as a list, each a ``lookup_key``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(
            f"{field} must be an iterable of task id strings, not {type(values).__name__}"
        )
    item = f"{field} item"
    return [lookup_key(value, item) for value in values]


def _fits_a_key(text: str, field: str) -> str:
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"{field} must be at most {MAX_KEY_LENGTH} characters, not {len(text)}")
    return text


def stored_key_text(value: Any, field: str) -> str:
    """An indexed text to write that may be empty (``backend``, a key timestamp): at most
    ``MAX_KEY_LENGTH`` characters, the width of MySQL's key columns."""
    if (
        type(value) is str
        and len(value) <= MAX_KEY_LENGTH
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, checked in one pass (as ``lookup_key``)
    return _fits_a_key(free_text(value, field), field)


def stored_key(value: Any, field: str) -> str:
    """A non-empty id to write: at most ``MAX_KEY_LENGTH`` characters."""
    if (
        type(value) is str
        and 0 < len(value) <= MAX_KEY_LENGTH
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, checked in one pass (as ``lookup_key``)
    text = free_text(value, field)
    if not text:
        raise ValueError(f"{field} must not be empty")
    return _fits_a_key(text, field)


# -- numbers -------------------------------------------------------------------


def stored_int(value: Any, field: str) -> int:
    """An int (bools are refused: ``True`` is not a shot count) in the INTEGER range;
    outside it, a ValueError on every engine."""
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value  # the common case
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{field} must be between {INT_MIN} and {INT_MAX}, not {value}")
    return value


def row_count(value: Any, field: str) -> int:
    """A number of rows (``limit``, ``offset``, ``keep_last``): a ``stored_int`` >= 0."""
    number = stored_int(value, field)
    if number < 0:
        raise ValueError(f"{field} must not be negative")
    return number


def int_in_range(value: Any, field: str, low: int, high: int) -> int:
    """A ``stored_int`` from ``low`` to ``high`` (a page or batch size)."""
    number = stored_int(value, field)
    if not low <= number <= high:
        raise ValueError(f"{field} must be from {low} to {high}, not {number}")
    return number


def age_in_hours(value: Any, field: str) -> float:
    """An age in hours, from 0 to below ``MAX_HOURS`` (a larger one is a mistake: a
    timestamp passed as hours). Anything else, a bool or a non-number too, is a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_HOURS:
        raise ValueError(f"{field} must be a number from 0 to {MAX_HOURS:g}, not {value!r}")
    return value


# -- the rest ------------------------------------------------------------------


def flag(value: Any, field: str) -> bool:
    """True or False, nothing that only looks like one (``0``, ``"yes"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be True or False, not {type(value).__name__}")
    return value


def stored_status(value: Any, field: str) -> str:
    """A status to write, as a column check (``normalize_status``: its messages name the status)."""
    if type(value) is str and value in STATUS_VALUES:
        return value  # the common case (``normalize_status`` would return it as it is)
    return normalize_status(value)


def metadata_dict(value: Any, owner: str) -> Mapping[str, Any]:
    """Metadata is a JSON object (a dict), whatever else it holds."""
    if type(value) is not dict and not isinstance(value, Mapping):  # a dict: no ABC check
        raise TypeError(f"metadata of {owner} must be a dict, not {type(value).__name__}")
    return value
