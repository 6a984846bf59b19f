"""Counting tasks: the one place every count of the package comes from.

``count()``, ``count_archived()``, the REST API's per-status counts, the
dashboard's counts and the CLI's ``stats`` all read a ``Tally``: tasks per
``(status, backend)``, optionally narrowed to one status and/or backend, read
in ONE statement (one snapshot, so its figures always agree with each other).

Where it reads from:

- ``task_counts``, wherever its table and all six triggers that keep it are
  there: SQLite files from revision 0007, PostgreSQL and MySQL/MariaDB from
  0009. The triggers live in the database, so every writer keeps the counts
  right in its own transaction (the reference store on SQLite, another tool on
  a server). On the servers each (status, backend) group is up to 16 rows,
  one per shard of the writers' connections, so concurrent saves of one group
  do not queue on one row; a tally sums them: at most a few hundred rows,
  whatever the store's size, read in one statement (exact: every writer's
  +1/-1 commits with its rows).
- Elsewhere (a database whose schema was made by ``create_all``, which makes
  no counters on any engine; one below 0007/0009) it is a ``GROUP BY status,
  backend`` over the rows that match, which the ``(status, backend,
  submit_time)`` / ``(backend, submit_time)`` indexes answer without reading a
  table row, in time that grows with the rows counted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, func, select, text

from uniqc_store.db.dialects import family_of
from uniqc_store.repository.statements import filtered
from uniqc_store.schema.tables import archived_tasks, task_counts, tasks

#: ``(table, trigger)`` of the triggers that keep ``task_counts`` (0007 on SQLite, 0009
#: on the servers, the same names); the counters are trusted only when all are there.
COUNTER_TRIGGERS = frozenset(
    (table, f"{table}_count_{event}")
    for table in ("tasks", "archived_tasks")
    for event in ("insert", "delete", "update")
)


@dataclass(frozen=True)
class Tally:
    """Tasks per ``(status, backend)`` (groups with no task are left out)."""

    groups: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[Any]) -> Tally:
        """From ``(status, backend, n)`` rows."""
        return cls({(str(s), str(b)): int(n) for s, b, n in rows if int(n) > 0})

    def total(self) -> int:
        return sum(self.groups.values())

    def by_status(self) -> dict[str, int]:
        return self._by(0)

    def by_backend(self) -> dict[str, int]:
        return self._by(1)

    def _by(self, part: int) -> dict[str, int]:
        found: dict[str, int] = {}
        for key, n in sorted(self.groups.items()):
            found[key[part]] = found.get(key[part], 0) + n
        return found


#: Per engine: ``(table, trigger)`` for every enabled trigger on the two task tables,
#: and ``('', 'task_counts')`` if that table is there.
_PRESENCE = {
    "sqlite": (
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
        "('tasks', 'archived_tasks') UNION ALL SELECT '', name FROM sqlite_master "
        "WHERE type = 'table' AND name = '{counts}'"
    ),
    "postgresql": (
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
        "AND c.oid IN (to_regclass('tasks'), to_regclass('archived_tasks')) "
        "UNION ALL SELECT '', '{counts}' WHERE to_regclass('{counts}') IS NOT NULL"
    ),
    "mysql": (
        "SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE IN ('tasks', 'archived_tasks') "
        "UNION ALL SELECT '', TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{counts}'"
    ),
}


def counters_present(conn: Connection) -> bool:
    """Whether this database keeps ``task_counts``: the table and every trigger that
    keeps it, each on its table (SQLite files from 0007, the servers from 0009). A
    database made by ``create_all`` has none of them and is counted from its rows."""
    query = _PRESENCE.get(family_of(conn.dialect.name).name)
    if query is None:
        return False
    found = {(str(t), str(n)) for t, n in conn.execute(text(query.format(counts=task_counts.name)))}
    return ("", task_counts.name) in found and found >= COUNTER_TRIGGERS


@functools.cache
def tally_statement(table: Table, counters: bool, status: bool, backend: bool) -> Select[Any]:
    """The one statement of a tally of ``table`` (``tasks`` or ``archived_tasks``),
    narrowed by ``:status`` / ``:backend`` parameters as asked."""
    if table is not tasks and table is not archived_tasks:
        raise ValueError(f"not a task table: {table.name}")
    if counters:
        c = task_counts.c
        stmt = select(c.status, c.backend, func.sum(c.n)).where(
            c.archived == int(table is archived_tasks)
        )
        if status:
            stmt = stmt.where(c.status == bindparam("status"))
        if backend:
            stmt = stmt.where(c.backend == bindparam("backend"))
        return stmt.group_by(c.status, c.backend).having(func.sum(c.n) > 0)
    grouped = select(table.c.status, table.c.backend, func.count())
    return filtered(grouped, table, status, backend).group_by(table.c.status, table.c.backend)


def tally(
    conn: Connection,
    table: Table,
    counters: bool,
    status: str | None = None,
    backend: str | None = None,
) -> Tally:
    """A tally read on ``conn`` (for callers that read several in one snapshot)."""
    stmt = tally_statement(table, counters, status is not None, backend is not None)
    params = {k: v for k, v in (("status", status), ("backend", backend)) if v is not None}
    return Tally.of(conn.execute(stmt, params))
