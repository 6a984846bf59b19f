"""Set-based upserts on the servers: rows go into a staging table, then one statement.

An import, and a large ``save_many``, on PostgreSQL or MySQL/MariaDB does not send
one upsert per row: its rows (already checked, as ``save()`` checks a record)
go into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT
DO UPDATE`` (PostgreSQL) or ``... ON DUPLICATE KEY UPDATE`` (MySQL) moves them
into the store's table, all inside the caller's transaction:

- PostgreSQL: ``CREATE TEMPORARY TABLE ... ON COMMIT DROP``, filled with ``COPY
  ... FROM STDIN`` (psycopg 3's ``cursor.copy()`` on the transaction's own
  connection). It is dropped when the work is done; a rollback undoes its
  creation, and COMMIT would drop it anyway: nothing is left on the connection,
  so a pooler in transaction mode (PgBouncer) may hand the server connection to
  anyone afterwards.
- MySQL/MariaDB: ``CREATE TEMPORARY TABLE`` (which, unlike other DDL, does not
  commit the transaction), filled by the driver's multi-row ``INSERT``\\ s. A
  temporary table outlives the transaction there, so it is dropped after a
  failure too (and a stale one from a connection that lost its drop is dropped
  before use).

A key that is on several lines ends as its last line left it, as row-by-row
upserts would (``merge``). The staging rows carry their line number (``uniqc_line``)
for that and for the import's errors.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Insert,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    Table,
    exists,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable
from sqlalchemy.util import await_only

from uniqc_store.db.dialects import SERVER_BACKENDS
from uniqc_store.db.executor import Transaction
from uniqc_store.repository.statements import KEPT_BY_SAVE
from uniqc_store.schema.tables import tasks
from uniqc_store.schema.types import JSONText, PayloadText

LINE = "uniqc_line"
PREFIX = "uniqc_stage_"
#: Rows per ``COPY`` / multi-row ``INSERT`` sent at once.
CHUNK = 5000
#: Engines with a staging path; SQLite keeps ``executemany`` (it has no server round trips).
ENGINES = SERVER_BACKENDS

Numbered = tuple[int, dict[str, Any]]


@functools.cache
def stage_table(table: Table, dialect: str) -> Table:
    """The staging twin of ``table``: its columns (nullable: the rows are checked
    already) and ``uniqc_line``. On MySQL its key (``table``'s key, then the line)
    serves the lookups of ``missing_parent``; PostgreSQL hashes instead, and a COPY
    into a table without an index is the fastest."""
    keys = [c.name for c in table.primary_key.columns]
    extra: list[Any] = [] if dialect == "postgresql" else [PrimaryKeyConstraint(*keys, LINE)]
    return Table(
        PREFIX + table.name,
        MetaData(),
        Column(LINE, BigInteger, nullable=False),
        *(Column(c.name, _stored_type(c)) for c in table.columns),
        *extra,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


def _stored_type(column: Column[Any]) -> Any:
    """The column's type as stored: a JSON payload is its text (already encoded and
    checked), not a value ``JSONText`` would encode again."""
    return PayloadText if isinstance(column.type, JSONText) else column.type


def _keys(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


@functools.cache
def _merge_statement(table: Table, dialect: str, keep: tuple[str, ...], dedupe: bool) -> Insert:
    """``INSERT INTO table SELECT ... FROM stage`` that updates every non-key column
    but ``keep`` on a clash; the last line of a key wins."""
    stage = stage_table(table, dialect)
    names = [c.name for c in table.columns]
    keys = _keys(table)
    updated = [n for n in names if n not in keys and n not in keep]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        rows: Select[Any] = select(*(stage.c[n] for n in names))
        if dedupe:  # ON CONFLICT cannot touch one row twice in a statement
            rank = func.row_number().over(
                partition_by=[stage.c[k] for k in keys], order_by=stage.c[LINE].desc()
            )
            ranked = select(*(stage.c[n] for n in names), rank.label("uniqc_rank")).subquery()
            rows = select(*(ranked.c[n] for n in names)).where(ranked.c.uniqc_rank == 1)
        pg = pg_insert(table).from_select(names, rows)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={n: pg.excluded[n] for n in updated}
        )
    from sqlalchemy.dialects.mysql import insert as my_insert

    # in line order: a key on several lines is updated by each in turn, the last one winning
    ordered = select(*(stage.c[n] for n in names)).order_by(stage.c[LINE])
    my = my_insert(table).from_select(names, ordered)
    return my.on_duplicate_key_update({n: stage.c[n] for n in updated})


async def _copy_async(driver: Any, sql: str, values: list[tuple[Any, ...]]) -> None:
    """The same COPY on psycopg's async connection, awaited from the greenlet SQLAlchemy
    runs the sync work in (``await_only``), as its own async driver calls are."""
    async with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for value in values:
            await copy.write_row(value)


class Stage:
    """One staging table in the transaction of ``conn``: ``load`` rows, then ``merge``."""

    def __init__(self, conn: Connection, table: Table) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name
        self.table = table
        self.stage = stage_table(table, self.dialect)
        self._columns = [c.name for c in self.stage.columns]
        if self.dialect != "postgresql":  # one a dropped drop left on this connection
            conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {self.stage.name}")
        conn.execute(CreateTable(self.stage))

    def load(self, rows: Sequence[Numbered]) -> None:
        """Add ``(line, row)`` pairs to the staging table."""
        if not rows:
            return
        if self.dialect == "postgresql":
            self._copy(rows)
        else:
            self._conn.execute(self.stage.insert(), [{LINE: n, **row} for n, row in rows])

    def _copy(self, rows: Sequence[Numbered]) -> None:
        """``COPY ... FROM STDIN`` on the transaction's own connection; a driver error
        is raised as SQLAlchemy's (with the disconnect flag the executor's retry rules
        read), as if SQLAlchemy had run it."""
        names = self._columns[1:]
        sql = f"COPY {self.stage.name} ({', '.join(self._columns)}) FROM STDIN"
        driver: Any = self._conn.connection.driver_connection
        values = [(number, *(row[n] for n in names)) for number, row in rows]
        try:
            if self._conn.dialect.is_async:  # psycopg_async: AsyncTaskStore's engine
                await_only(_copy_async(driver, sql, values))
            else:
                with driver.cursor() as cursor, cursor.copy(sql) as copy:
                    for value in values:
                        copy.write_row(value)
        except self._conn.dialect.loaded_dbapi.Error as exc:
            dialect = self._conn.dialect
            dropped = dialect.is_disconnect(exc, driver, None)
            if dropped:
                self._conn.invalidate(exc)
            raise DBAPIError.instance(
                sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=dropped
            ) from exc

    def analyze(self) -> None:
        """Statistics for the planner before a query joins the staging table (PostgreSQL
        never analyzes a temporary table by itself)."""
        if self.dialect == "postgresql":
            self._conn.exec_driver_sql(f"ANALYZE {self.stage.name}")

    def merge(self, *, keep: tuple[str, ...] = (), dedupe: bool = True) -> None:
        """Upsert every staged row into the table, in one statement. ``dedupe=False``
        when no key is on two lines (the caller made sure)."""
        self._conn.execute(_merge_statement(self.table, self.dialect, keep, dedupe))

    def drop(self) -> None:
        """Remove the staging table now, at the end of the work that used it: the
        transaction may go on (inside ``store.using()``, the application's) and hold
        another import or ``save_many``."""
        temporary = "" if self.dialect == "postgresql" else "TEMPORARY "
        self._conn.exec_driver_sql(f"DROP {temporary}TABLE IF EXISTS {self.stage.name}")


@contextlib.contextmanager
def stages(conn: Connection, tables: Iterable[Table]) -> Iterator[dict[str, Stage]]:
    """A ``Stage`` per table (by name) for the block, dropped when it ends.

    After a failure PostgreSQL's rollback (of the transaction, or of the store's
    SAVEPOINT inside ``using()``) undoes their creation, and the aborted transaction
    would refuse a ``DROP`` anyway; a MySQL temporary table outlives a rollback, so
    it is dropped then too (best effort: a dropped connection took it with it)."""
    found: dict[str, Stage] = {}
    try:
        for table in tables:
            found[table.name] = Stage(conn, table)
        yield found
    except BaseException:
        if conn.dialect.name != "postgresql":
            with contextlib.suppress(DBAPIError):
                for stage in found.values():
                    stage.drop()
        raise
    for stage in found.values():
        stage.drop()


def missing_parent(
    conn: Connection, shards: Stage, parents: Stage, live: Table
) -> tuple[int, Any, Any] | None:
    """The first staged shard (line, shard index, task id) whose task is neither in
    ``live`` nor staged on an earlier line, or None."""
    child = shards.stage
    staged = parents.stage
    key = child.c.uniqc_task_id
    in_store = exists().where(live.c.task_id == key)
    earlier = exists().where(staged.c.task_id == key, staged.c[LINE] < child.c[LINE])
    shards.analyze()
    parents.analyze()
    stmt = (
        select(child.c[LINE], child.c.shard_index, key)
        .where(~in_store, ~earlier)
        .order_by(child.c[LINE])
        .limit(1)
    )
    row = conn.execute(stmt).first()
    return None if row is None else (int(row[0]), row[1], row[2])


def upsert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keep: tuple[str, ...]
) -> None:
    """``save_many``'s path: ``rows`` (one per key, checked) staged and merged at once."""
    with stages(conn, [table]) as found:
        stage = found[table.name]
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            stage.load(list(enumerate(chunk, start=start + 1)))
        stage.merge(keep=keep, dedupe=False)


#: From how many rows ``save_many`` goes through a staging table on the servers (below,
#: the three extra statements cost more than the row-by-row upserts they save).
STAGED_FROM = 1000


def one_per_key(rows: Sequence[dict[str, Any]], keep: tuple[str, ...]) -> list[dict[str, Any]]:
    """``rows`` with each task id once, as upserting them in turn would leave it: the
    last row's values, with the ``keep`` columns of the first (which later upserts
    of that id leave as they are)."""
    found: dict[Any, dict[str, Any]] = {}
    for row in rows:
        first = found.get(row["task_id"])
        found[row["task_id"]] = row if first is None else {**row, **{k: first[k] for k in keep}}
    return list(found.values())


def save_rows(tx: Transaction, upsert: Insert, rows: list[dict[str, Any]]) -> None:
    """``save_many``'s write of ``tasks`` rows: one staged, set-based upsert for many
    rows on a server, else ``upsert`` (save()'s) as an ``executemany``."""
    if len(rows) >= STAGED_FROM and tx.connection.dialect.name in ENGINES:
        rows = one_per_key(rows, KEPT_BY_SAVE)
        upsert_rows(tx.connection, tasks, rows, KEPT_BY_SAVE)
    else:
        tx.run(upsert, rows)
