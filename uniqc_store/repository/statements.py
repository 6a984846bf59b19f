"""The SQL the repository runs, built once per dialect.

The few statements that differ by engine (upserts, the tie-breaker of the
newest-first order) are chosen here; everything else is plain Core.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Insert,
    Integer,
    Select,
    Table,
    Text,
    Update,
    bindparam,
    delete,
    literal_column,
    select,
    type_coerce,
    update,
)

from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.types import JSONText


@functools.cache
def stored(table: Table) -> tuple[ColumnElement[Any], ...]:
    """The table's columns as stored: JSON payloads as their text, not decoded.

    The repository encodes and checks payloads itself (``schema/values.py``) and
    decodes them in bulk; the ORM's ``JSONText`` type is for the models.
    """
    return tuple(
        type_coerce(c, Text()).label(c.name) if isinstance(c.type, JSONText) else c
        for c in table.columns
    )


def stored_binds(table: Table) -> dict[str, BindParameter[Any]]:
    """One bind parameter per column, JSON payloads bound as the text already encoded."""
    return {
        c.name: bindparam(c.name, type_=Text() if isinstance(c.type, JSONText) else c.type)
        for c in table.columns
    }


#: The dialect module with each engine's INSERT ... ON CONFLICT / ON DUPLICATE KEY.
_UPSERT_DIALECTS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def upsert(table: Table, dialect: str, *, keep: Sequence[str] = ()) -> Insert:
    """INSERT that updates every non-key column except ``keep`` on a key clash."""
    keys = {c.name for c in table.primary_key.columns}
    updated = [c.name for c in table.columns if c.name not in keys and c.name not in keep]
    module = _UPSERT_DIALECTS.get(dialect)
    if module is None:
        raise ValueError(
            f"unsupported database engine {dialect!r}: use SQLite, PostgreSQL or MySQL"
        )
    # imported here: only the engine in use is loaded (it already is, by the engine)
    stmt: Any = import_module(f"sqlalchemy.dialects.{module}").insert(table)
    stmt = stmt.values(stored_binds(table))
    if module == "mysql":
        return stmt.on_duplicate_key_update(  # type: ignore[no-any-return]
            {c: stmt.inserted[c] for c in updated}
        )
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=sorted(keys), set_={c: stmt.excluded[c] for c in updated}
    )


def newest_first(table: Table, dialect: str) -> tuple[ColumnElement[Any], ...]:
    """Newest ``submit_time`` first; ties newest-inserted first where the engine
    keeps insertion order (SQLite's rowid, as the reference), else by id."""
    tiebreak = literal_column("rowid") if dialect == "sqlite" else table.c.task_id
    return (table.c.submit_time.desc(), tiebreak.desc())


def filtered(stmt: Select[Any], table: Table, status: bool, backend: bool) -> Select[Any]:
    """``stmt`` narrowed by ``:status`` and/or ``:backend`` parameters."""
    if status:
        stmt = stmt.where(table.c.status == bindparam("status"))
    if backend:
        stmt = stmt.where(table.c.backend == bindparam("backend"))
    return stmt


@functools.cache
def listing(
    table: Table, dialect: str, status: bool, backend: bool, limit: bool, offset: bool
) -> Select[Any]:
    """Newest-first rows of ``table``, with the filters and paging asked for as parameters.

    Cached per shape, so each shape is built and compiled once.
    """
    stmt = filtered(select(*stored(table)), table, status, backend)
    stmt = stmt.order_by(*newest_first(table, dialect))
    if limit:
        stmt = stmt.limit(bindparam("limit", type_=Integer()))
    if offset:  # an offset alone is fine: SQLAlchemy adds SQLite's "LIMIT -1"
        stmt = stmt.offset(bindparam("offset", type_=Integer()))
    return stmt


@functools.cache
def page_bound(table: Table) -> Select[Any]:
    """The ``submit_time`` of the ``:edge``-th newest row of one status and backend,
    by ``submit_time`` alone (``bounded_listing``'s bound, on MySQL/MariaDB)."""
    stmt = filtered(select(table.c.submit_time), table, True, True)
    stmt = stmt.order_by(table.c.submit_time.desc()).limit(1)
    return stmt.offset(bindparam("edge", type_=Integer()))


@functools.cache
def bounded_listing(table: Table, dialect: str, offset: bool) -> Select[Any]:
    """``listing`` by status and backend, of the rows from ``:bound`` up only.

    Why, on MySQL/MariaDB: InnoDB extends an index by the primary key only while
    both fit in 3,072 bytes; ``(status, backend, submit_time)`` (3 x 1,022) with
    ``task_id`` (1,022) does not, so the optimizer does not know that index is in
    ``task_id`` order within one ``submit_time``: it either sorts every matching
    row or walks ``tasks_submit_time_idx`` (extended: 2 x 1,022) filtering on
    status and backend. Cut at the bound (``page_bound``, which the index
    serves in order), the page is a range of ``:offset + :limit`` entries and ties,
    sorted: the same page, the rows tying on the bound included."""
    stmt = filtered(select(*stored(table)), table, True, True)
    stmt = stmt.where(table.c.submit_time >= bindparam("bound")).order_by(
        *newest_first(table, dialect)
    )
    stmt = stmt.limit(bindparam("limit", type_=Integer()))
    return stmt.offset(bindparam("offset", type_=Integer())) if offset else stmt


@functools.cache
def keyset_page(table: Table, status: bool, backend: bool, first: bool) -> Select[Any]:
    """A page of ``table`` in id order after ``:after`` (from the start when ``first``)."""
    stmt = filtered(select(*stored(table)), table, status, backend).order_by(table.c.task_id)
    if not first:
        stmt = stmt.where(table.c.task_id > bindparam("after"))
    return stmt.limit(bindparam("limit", type_=Integer()))


@functools.cache
def scan_page(table: Table, columns: tuple[str, ...], first: bool) -> Select[Any]:
    """``columns`` of a task table in id order after ``:after``, ``:limit`` rows: the
    walks of the retention calls, each page read in its own short read."""
    stmt = select(*(table.c[name] for name in columns)).order_by(table.c.task_id)
    if not first:
        stmt = stmt.where(table.c.task_id > bindparam("after"))
    return stmt.limit(bindparam("limit", type_=Integer()))


#: The columns ``save()`` keeps on a row that exists (its upsert does not set them).
KEPT_BY_SAVE = ("submit_time",)


@dataclass(frozen=True)
class Statements:
    """The fixed statements of one store (compiled once, then cached by SQLAlchemy)."""

    dialect: str
    upsert_task: Insert
    upsert_shard: Insert
    get_task: Select[Any]
    lock_task: Select[Any]
    update_task: Update
    get_archived: Select[Any]
    get_shards: Select[Any]
    get_archived_shards: Select[Any]
    shard_by_platform: Select[Any]
    shard_by_platform_backend: Select[Any]
    parent_by_platform: Select[Any]
    parent_by_platform_backend: Select[Any]
    delete_task: Delete
    delete_shards: Delete
    delete_in_statuses: Delete
    parents_among: Select[Any]

    @classmethod
    def for_dialect(cls, dialect: str) -> Statements:
        by_shard = (task_shards.c.uniqc_task_id == bindparam("task_id"),)
        by_platform = task_shards.c.platform_task_id == bindparam("platform_task_id")
        by_backend = task_shards.c.backend == bindparam("backend")
        parent = select(task_shards.c.uniqc_task_id).where(by_platform)
        get_task = select(*stored(tasks)).where(tasks.c.task_id == bindparam("task_id"))
        rewritten = {
            name: bind
            for name, bind in stored_binds(tasks).items()
            if name not in ("task_id", "submit_time")  # the key, and what save() keeps
        }
        return cls(
            dialect=dialect,
            upsert_task=upsert(tasks, dialect, keep=KEPT_BY_SAVE),
            upsert_shard=upsert(task_shards, dialect, keep=("submit_time",)),
            get_task=get_task,
            lock_task=get_task.with_for_update(),
            update_task=update(tasks).where(tasks.c.task_id == bindparam("key")).values(rewritten),
            get_archived=select(*stored(archived_tasks)).where(
                archived_tasks.c.task_id == bindparam("task_id")
            ),
            get_shards=select(*stored(task_shards))
            .where(*by_shard)
            .order_by(task_shards.c.shard_index),
            get_archived_shards=select(*stored(archived_task_shards))
            .where(archived_task_shards.c.uniqc_task_id == bindparam("task_id"))
            .order_by(archived_task_shards.c.shard_index),
            shard_by_platform=select(*stored(task_shards)).where(by_platform).limit(1),
            shard_by_platform_backend=select(*stored(task_shards))
            .where(by_platform, by_backend)
            .limit(1),
            parent_by_platform=parent.limit(1),
            parent_by_platform_backend=parent.where(by_backend).limit(1),
            delete_task=delete(tasks).where(tasks.c.task_id == bindparam("task_id")),
            delete_shards=delete(task_shards).where(*by_shard),
            delete_in_statuses=delete(tasks).where(
                tasks.c.status.in_(bindparam("statuses", expanding=True))
            ),
            parents_among=select(tasks.c.task_id).where(
                tasks.c.task_id.in_(bindparam("ids", expanding=True))
            ),
        )
