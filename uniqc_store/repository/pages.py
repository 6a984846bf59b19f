"""Deep pages: newest-first listings read by keyset, with opaque cursors.

``list(offset=N)`` makes the database walk and drop N rows; a page here starts
where the previous one ended, from a position held in its cursor, so every page
costs what the first one does. The order is (``submit_time`` DESC, ``task_id``
DESC) on every engine: a total order over keys that no call changes (``save`` and
``modify`` keep ``submit_time``), so a walk sees every row that exists from its
first page to its last exactly once, whatever is inserted or deleted meanwhile.

A cursor is the last row's (``submit_time``, ``task_id``) as compact JSON,
base64url-encoded without padding, tagged with its format version and the table
it pages. Decoding accepts only what encoding can give (the canonical form,
checked values), so a cursor that is malformed, edited or made for the other
table is a ``ValueError`` before any SQL runs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, Select, Table, and_, bindparam, func, or_, select

from uniqc_store.db.dialects import is_mysql
from uniqc_store.records import TaskInfo
from uniqc_store.repository.statements import bounded_listing, filtered, page_bound, stored
from uniqc_store.schema.tables import archived_tasks, tasks
from uniqc_store.schema.validation import lookup_key


class Page(NamedTuple):
    """One page of a listing: its tasks and the cursor of the next page.

    ``next_cursor`` is None when no row followed this page when it was read;
    otherwise pass it back as ``cursor=`` for the next page. A ``NamedTuple``,
    so ``tasks, next_cursor = store.list_page(...)`` works too.
    """

    tasks: list[TaskInfo]
    next_cursor: str | None


#: The cursor format; a cursor of another version is refused, never misread.
CURSOR_VERSION = 1
#: The longest cursor accepted: two keys of ``MAX_KEY_LENGTH`` four-byte characters fit.
MAX_CURSOR_LENGTH = 4096
#: Which table a cursor pages, as its tag says.
_KINDS = {tasks.name: "t", archived_tasks.name: "a"}
_WHAT = {"t": "live tasks (list_page)", "a": "the archive (list_archived_page)"}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
#: A SQLite BLOB in ``submit_time`` (another tool wrote it; the row reads as its text):
#: a cursor keeps the bytes, so the next page compares what the database sorts.
_BLOB = "x"


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_cursor(table: Table, submit_time: str | bytes, task_id: str) -> str:
    """The cursor of a page whose last row has these key values (as stored)."""
    submit: Any = {_BLOB: submit_time.hex()} if isinstance(submit_time, bytes) else submit_time
    payload = _canonical_json([CURSOR_VERSION, _KINDS[table.name], submit, task_id])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: Any, table: Table, dialect: str) -> tuple[str | bytes, str]:
    """The (``submit_time``, ``task_id``) position ``cursor`` holds, checked.

    ``ValueError`` (``TypeError`` for a non-string) for anything ``encode_cursor``
    could not have made for ``table``: the next page is never a database error.
    """
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a string or None, not {type(cursor).__name__}")
    if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
        raise _refused("it is not a base64url string of at most 4,096 characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _refused("it does not decode") from None
    if not (isinstance(payload, list) and len(payload) == 4 and payload[0] == CURSOR_VERSION):
        raise _refused(f"it is not a version {CURSOR_VERSION} cursor")
    _version, kind, submit, task_id = payload
    if kind != _KINDS[table.name]:
        raise _refused(f"it pages {_WHAT.get(kind, 'nothing this store has')}")
    position = (_submit_time(submit, dialect), _task_id(task_id))
    if encode_cursor(table, *position) != cursor:  # one spelling per position
        raise _refused("it is not in the form the store writes")
    return position


def _submit_time(value: Any, dialect: str) -> str | bytes:
    if isinstance(value, dict) and list(value) == [_BLOB] and dialect == "sqlite":
        try:
            return bytes.fromhex(value[_BLOB])
        except (TypeError, ValueError):
            raise _refused("its binary submit_time is not hex") from None
    if not isinstance(value, str):
        raise _refused("its submit_time is not text")
    return _checked(value, "submit_time")


def _task_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _refused("its task_id is not a non-empty text")
    return _checked(value, "task_id")


def _checked(value: str, field: str) -> str:
    try:
        return lookup_key(value, field)
    except ValueError as exc:  # NUL, lone surrogates: no engine could have stored them
        raise _refused(str(exc)) from None


def _refused(reason: str) -> ValueError:
    return ValueError(
        f"cursor is not one this store gave ({reason}): pass a page's next_cursor "
        "unchanged (no cursor: the first page)"
    )


@functools.cache
def page_query(table: Table, status: bool, backend: bool, after: bool) -> Select[Any]:
    """``:limit`` rows of ``table`` newest first, after the ``:submit_time`` /
    ``:task_id`` position when ``after``, with the filters asked for.

    The position is written as ``submit_time <= :t AND (submit_time < :t OR task_id
    < :id)``: its first term is a range on the leading column of any index that
    starts with ``submit_time`` (or with the filters, then ``submit_time``) on every
    engine (a row-value comparison is not, on MariaDB), and the ORDER BY is an index
    order where the index also holds ``task_id`` (InnoDB's secondary indexes hold the
    key; SQLite and PostgreSQL need it spelled out, else the ties of one
    ``submit_time`` are sorted, a few rows at a time). The first page gets the range
    ``submit_time <= (SELECT max(submit_time) ...)``, true of every row: without a
    range, SQLite's planner read a status filter's whole index and sorted it (93 ms
    for the first page at 200k tasks, 0.09 ms with it; ``benchmarks/pages.py``).
    """
    stmt = filtered(select(*stored(table)), table, status, backend)
    submitted, task_id = table.c.submit_time, table.c.task_id
    if after:
        moment = bindparam("submit_time", type_=submitted.type)
        key = bindparam("task_id", type_=task_id.type)
        stmt = stmt.where(
            and_(submitted <= moment, or_(submitted < moment, task_id < key)),
        )
    else:  # true of every row (NOT NULL), and a range the planner walks the index for
        stmt = stmt.where(submitted <= select(func.max(submitted)).scalar_subquery())
    stmt = stmt.order_by(table.c.submit_time.desc(), table.c.task_id.desc())
    return stmt.limit(bindparam("limit", type_=Integer()))


def key_positions(table: Table) -> tuple[int, int]:
    """Where ``submit_time`` and ``task_id`` sit in a row of ``stored(table)``."""
    names = [c.name for c in table.columns]
    return names.index("submit_time"), names.index("task_id")


def reads_from_a_bound(dialect: str) -> bool:
    """Whether pages by status and backend are read by ``bounded_page``: on MySQL/MariaDB."""
    return is_mysql(dialect)


def bounded_page(conn: Connection, table: Table, params: dict[str, Any]) -> list[Any]:
    """``list(status=, backend=, limit=, offset=)`` on MySQL/MariaDB in two statements
    of one snapshot: the page's oldest ``submit_time`` (``statements.page_bound``),
    then the rows from it up (``statements.bounded_listing``, which says why)."""
    start = params.get("offset", 0)
    if params["limit"] == 0:
        return []
    edge = {**params, "edge": start + params["limit"] - 1}
    bound = conn.execute(page_bound(table), edge).scalar()
    # fewer rows than the page's end: all of them ('' sorts before every text)
    found = {**params, "bound": "" if bound is None else bound}
    return list(conn.execute(bounded_listing(table, conn.dialect.name, "offset" in params), found))
