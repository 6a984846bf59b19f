"""Counting tasks: the one place every count of the package comes from.

``count()``, ``count_archived()``, the REST API's per-status counts, the
dashboard's counts and the CLI's ``stats`` all read a ``Tally``: tasks per
``(status, backend)``, optionally narrowed to one status and/or backend, read
in ONE statement (one snapshot, so its figures always agree with each other).

Where it reads from:

- SQLite files from revision 0007 keep ``task_counts``, maintained by triggers
  in the file (so by every writer, the reference store included): the tally is
  a read of at most a few dozen rows, whatever the store's size.
- Elsewhere (servers; a SQLite file whose schema was made by ``create_all``)
  it is a ``GROUP BY status, backend`` over the rows that match, which the
  ``(status, backend, submit_time)`` / ``(backend, submit_time)`` indexes
  answer without reading a table row. The servers keep no counter rows on
  purpose: every save of a (status, backend) group would wait on its row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, func, select, text

from uniqc_store.repository.statements import filtered
from uniqc_store.schema.tables import archived_tasks, task_counts, tasks

#: The triggers revision 0007 creates; counters are trusted only when all are there.
COUNTER_TRIGGERS = frozenset(
    f"{table}_count_{event}"
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


def counters_present(conn: Connection) -> bool:
    """Whether this database keeps ``task_counts`` (a SQLite file at 0007 or later,
    with every trigger that keeps it)."""
    if conn.dialect.name != "sqlite":
        return False
    names = {
        str(name)
        for (name,) in conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE (type = 'trigger' AND tbl_name IN "
                "('tasks', 'archived_tasks')) OR (type = 'table' AND name = :counts)"
            ),
            {"counts": task_counts.name},
        )
    }
    return task_counts.name in names and names >= COUNTER_TRIGGERS


@functools.cache
def tally_statement(table: Table, counters: bool, status: bool, backend: bool) -> Select[Any]:
    """The one statement of a tally of ``table`` (``tasks`` or ``archived_tasks``),
    narrowed by ``:status`` / ``:backend`` parameters as asked."""
    if table is not tasks and table is not archived_tasks:
        raise ValueError(f"not a task table: {table.name}")
    if counters:
        stmt = select(task_counts.c.status, task_counts.c.backend, task_counts.c.n).where(
            task_counts.c.archived == int(table is archived_tasks), task_counts.c.n > 0
        )
        if status:
            stmt = stmt.where(task_counts.c.status == bindparam("status"))
        if backend:
            stmt = stmt.where(task_counts.c.backend == bindparam("backend"))
        return stmt
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
