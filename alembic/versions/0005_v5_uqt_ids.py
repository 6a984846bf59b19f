"""v5: re-key legacy platform-id tasks as ``uqt_`` tasks with one shard each.

Data: every row of ``tasks`` / ``archived_tasks`` whose ``task_id`` does not
start with ``uqt_`` gets a fresh ``uqt_<uuid4 hex>`` id in place (an UPDATE:
every other field, and SQLite's insertion order, is kept). Its metadata gains
``legacy_platform_id`` (JSON
metadata that is not an object is kept as ``{"legacy_metadata_raw": ...}``,
text that is not JSON at all as ``{"legacy_metadata_text": "<the text>"}``;
empty metadata becomes ``{}``, as the reference reads it). One shard row (circuit_count 1,
sub_index_offset 0) records the old id as ``platform_task_id`` with the
task's backend, status, result, error and times; archived rows get theirs in
``archived_task_shards`` with ``archived_at``. Shards already pointing at a
legacy id follow it to the new id (the reference's cascade deleted them);
the synthesised shard then takes the next free index instead of 0.
Rows already ``uqt_`` are untouched; a NULL ``task_id`` is left as it is.
Rows are streamed in keyset batches, so memory does not grow with the table.
On SQLite (with its JSON functions) each batch is three set statements in the
database; elsewhere Python rewrites each batch and hands it back in bulk.
Both apply the same rule; ``alembic -x v5_rekey=python upgrade head`` runs the
Python batches on SQLite too (``uses_sql_path``), which is how the suite
compares the two on the same files.
In ``--sql`` (offline) mode this revision only writes a comment.
Schema: none.
Downgrade: gives every row this revision re-keyed its legacy id back, drops
the synthesised shard and ``legacy_platform_id`` (unwrapping
``legacy_metadata_raw``; ``legacy_metadata_text`` gives the text back exactly).
Amended after release (docs/adr/0001): until then unparseable metadata became
``{}`` and was lost; files migrated before keep ``{}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH_SIZE = 2000
PREFIX = "uqt_"
TASK_COLUMNS = (
    "task_id",
    "backend",
    "status",
    "shots",
    "submit_time",
    "update_time",
    "result_json",
    "metadata_json",
    "error_message",
)
SHARD_COLUMNS = (
    "uniqc_task_id",
    "shard_index",
    "platform_task_id",
    "backend",
    "circuit_count",
    "sub_index_offset",
    "status",
    "result_json",
    "error_message",
    "submit_time",
    "update_time",
)
PAIRS = (("tasks", "task_shards", False), ("archived_tasks", "archived_task_shards", True))


def _table(name: str, columns: tuple[str, ...], archived: bool) -> sa.TableClause:
    extra = ("archived_at",) if archived else ()
    return sa.table(name, *(sa.column(c) for c in columns + extra))


def _batches(conn: sa.Connection, table: sa.TableClause, legacy: bool) -> Iterator[list[Any]]:
    """Rows whose id is (or is not) ``uqt_``, in key order, a batch at a time."""
    key = table.c.task_id
    prefix_test = sa.func.substr(key, 1, len(PREFIX)) == PREFIX
    base = sa.select(table).where(~prefix_test if legacy else prefix_test).order_by(key)
    last: str | None = None
    while True:
        stmt = base if last is None else base.where(key > last)
        rows = conn.execute(stmt.limit(BATCH_SIZE)).mappings().all()
        if not rows:
            return
        last = rows[-1]["task_id"]
        yield list(rows)


def _legacy_metadata(raw: str | None, legacy_id: str) -> str:
    try:
        metadata = json.loads(raw) if raw else {}
    except ValueError:
        metadata = {"legacy_metadata_text": raw}  # not JSON: kept as it was
    if not isinstance(metadata, dict):
        metadata = {"legacy_metadata_raw": metadata}
    metadata["legacy_platform_id"] = legacy_id
    return json.dumps(metadata, ensure_ascii=False)


def _next_shard_index(
    conn: sa.Connection, shards: sa.TableClause, ids: list[str]
) -> dict[str, int]:
    """For parents that already have shards: the index after their last one."""
    stmt = (
        sa.select(shards.c.uniqc_task_id, sa.func.max(shards.c.shard_index))
        .where(shards.c.uniqc_task_id.in_(ids))
        .group_by(shards.c.uniqc_task_id)
    )
    return {parent: top + 1 for parent, top in conn.execute(stmt)}


def _executemany(conn: sa.Connection, stmt: sa.Executable, rows: list[dict[str, Any]]) -> None:
    """Run ``stmt`` once per row, handing the rows straight to the driver.

    SQLAlchemy's per-row parameter processing costs more than SQLite's work
    here, and these columns need no type conversion.
    """
    if not rows:
        return
    compiled = stmt.compile(dialect=conn.dialect)
    if compiled.positional:
        order = compiled.positiontup or []
        conn.exec_driver_sql(compiled.string, [tuple(r[n] for n in order) for r in rows])
    else:
        conn.exec_driver_sql(compiled.string, rows)


def _repoint_shards(
    conn: sa.Connection, shards: sa.TableClause, moves: list[dict[str, str]]
) -> None:
    repoint = (
        shards.update()
        .where(shards.c.uniqc_task_id == sa.bindparam("old_id"))
        .values(uniqc_task_id=sa.bindparam("new_id"))
    )
    _executemany(conn, repoint, moves)


def _rekey_batch(
    conn: sa.Connection,
    rows: list[Mapping[str, Any]],
    tasks: sa.TableClause,
    shards: sa.TableClause,
    archived: bool,
) -> None:
    old_ids = [row["task_id"] for row in rows]
    next_index = _next_shard_index(conn, shards, old_ids)
    renames, new_shards = [], []
    for row in rows:
        old_id, new_id = row["task_id"], f"{PREFIX}{uuid.uuid4().hex}"
        metadata = _legacy_metadata(row["metadata_json"], old_id)
        renames.append({"old_id": old_id, "new_id": new_id, "new_metadata": metadata})
        shard = {
            "uniqc_task_id": new_id,
            "shard_index": next_index.get(old_id, 0),
            "platform_task_id": old_id,
            "backend": row["backend"],
            "circuit_count": 1,
            "sub_index_offset": 0,
            "status": row["status"],
            "result_json": row["result_json"],
            "error_message": row["error_message"],
            "submit_time": row["submit_time"],
            "update_time": row["update_time"],
        }
        if archived:
            shard["archived_at"] = row["archived_at"]
        new_shards.append(shard)
    _rekey(conn, tasks, shards, renames)
    columns = SHARD_COLUMNS + (("archived_at",) if archived else ())
    insert = shards.insert().values({c: sa.bindparam(c) for c in columns})
    _executemany(conn, insert, new_shards)


def _rekey(
    conn: sa.Connection,
    tasks: sa.TableClause,
    shards: sa.TableClause,
    renames: list[dict[str, str]],
) -> None:
    """Give rows a new id and metadata, keeping every other field.

    Rows no shard points at are renamed in place (SQLite keeps their rowid,
    hence their insertion order). A row with shards is copied under its new
    id, its shards re-pointed, the old row deleted, so the foreign key holds
    after every statement on engines that check it.
    """
    with_shards = _next_shard_index(conn, shards, [r["old_id"] for r in renames])
    _rename(conn, tasks, [r for r in renames if r["old_id"] not in with_shards])
    for r in (r for r in renames if r["old_id"] in with_shards):
        replaced = {
            "task_id": sa.literal(r["new_id"]),
            "metadata_json": sa.literal(r["new_metadata"]),
        }
        columns = [c.name for c in tasks.columns]
        copy = sa.select(*(replaced.get(c, tasks.c[c]) for c in columns))
        conn.execute(
            tasks.insert().from_select(columns, copy.where(tasks.c.task_id == r["old_id"]))
        )
        _repoint_shards(conn, shards, [r])
        conn.execute(tasks.delete().where(tasks.c.task_id == r["old_id"]))


def _rename(conn: sa.Connection, tasks: sa.TableClause, renames: list[dict[str, str]]) -> None:
    """New ids and metadata in place, in one statement per batch."""
    rename = (
        tasks.update()
        .where(tasks.c.task_id == sa.bindparam("old_id"))
        .values(task_id=sa.bindparam("new_id"), metadata_json=sa.bindparam("new_metadata"))
    )
    _executemany(conn, rename, renames)


def _restore_metadata(raw: str | None) -> tuple[str | None, str]:
    """The legacy id recorded in the metadata, and the metadata without it."""
    try:
        metadata = json.loads(raw) if raw else {}
    except ValueError:
        return None, raw or "{}"
    if not isinstance(metadata, dict) or not isinstance(metadata.get("legacy_platform_id"), str):
        return None, raw or "{}"
    legacy_id = metadata.pop("legacy_platform_id")
    if set(metadata) == {"legacy_metadata_text"} and isinstance(
        metadata["legacy_metadata_text"], str
    ):
        return legacy_id, metadata["legacy_metadata_text"]  # the text as it was
    if set(metadata) == {"legacy_metadata_raw"}:
        metadata = metadata["legacy_metadata_raw"]
    return legacy_id, json.dumps(metadata, ensure_ascii=False)


def _unkey_batch(
    conn: sa.Connection,
    rows: list[Mapping[str, Any]],
    tasks: sa.TableClause,
    shards: sa.TableClause,
) -> None:
    renames, synthetic = [], []
    for row in rows:
        legacy_id, metadata_json = _restore_metadata(row["metadata_json"])
        if legacy_id is None:
            continue
        marker = sa.select(shards.c.shard_index).where(
            shards.c.uniqc_task_id == row["task_id"], shards.c.platform_task_id == legacy_id
        )
        index = conn.execute(marker.limit(1)).scalar()
        if index is None:
            continue  # not a row this revision made
        renames.append(
            {"old_id": row["task_id"], "new_id": legacy_id, "new_metadata": metadata_json}
        )
        synthetic.append({"parent": row["task_id"], "index": index})
    if not renames:
        return
    clash = conn.execute(
        sa.select(tasks.c.task_id).where(tasks.c.task_id.in_([r["new_id"] for r in renames]))
    ).first()
    if clash is not None:
        raise RuntimeError(f"cannot restore legacy id {clash[0]!r}: a row already has it")
    conn.execute(
        shards.delete().where(
            shards.c.uniqc_task_id == sa.bindparam("parent"),
            shards.c.shard_index == sa.bindparam("index"),
        ),
        synthetic,
    )
    _rekey(conn, tasks, shards, renames)


def _check_foreign_keys(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"v5 left {len(broken)} shard rows without a parent task")


def _offline() -> bool:
    """In ``--sql`` mode there are no rows to read: say so in the script instead."""
    if not context.is_offline_mode():
        return False
    op.get_context().impl.static_output(
        "-- v5 re-keys legacy rows in Python and cannot be written as SQL; an empty\n"
        "-- database needs nothing here. Run it online: uniqc-store upgrade --url ..."
    )
    return True


# --- the same rules as set statements, for SQLite ------------------------------
SQL_BATCH_SIZE = 20_000
# 'uqt_' + 32 random hex digits with uuid4's version (4) and variant (8-b) digits
SQL_NEW_ID = (
    "'uqt_' || lower(substr(h, 1, 12) || '4' || substr(h, 14, 3)"
    " || substr('89ab', 1 + (random() & 3), 1) || substr(h, 18, 15))"
)
SQL_METADATA = (
    "json_set(CASE WHEN json_valid(metadata_json) AND json_type(metadata_json) = 'object'"
    " THEN metadata_json WHEN json_valid(metadata_json)"
    " THEN json_object('legacy_metadata_raw', json(metadata_json))"
    " WHEN coalesce(metadata_json, '') = '' THEN '{}'"
    " ELSE json_object('legacy_metadata_text', metadata_json) END,"
    " '$.legacy_platform_id', task_id)"
)


def _sqlite_has_json(conn: sa.Connection) -> bool:
    try:
        conn.exec_driver_sql("SELECT json_valid('{}')")
    except sa.exc.OperationalError:
        return False
    return True


def uses_sql_path(conn: sa.Connection) -> bool:
    """Whether the re-keying runs as set statements in SQLite (the default wherever
    SQLite has its JSON functions) or as Python batches (every other engine, and
    SQLite when ``-x v5_rekey=python`` is given)."""
    choice = context.get_x_argument(as_dictionary=True).get("v5_rekey", "auto")
    if choice not in ("auto", "python"):
        raise ValueError(f"-x v5_rekey={choice}: expected auto or python")
    return choice == "auto" and conn.dialect.name == "sqlite" and _sqlite_has_json(conn)


def _rekey_in_sqlite(conn: sa.Connection, tasks: str, shards: str, archived: bool) -> None:
    """Batch by batch: map old ids to new, add the shards, move old shards, rename."""
    extra = ", archived_at" if archived else ""
    statements = [
        f"INSERT INTO {shards} ({', '.join(SHARD_COLUMNS)}{extra})"
        " SELECT m.new_id, coalesce((SELECT max(s.shard_index) + 1 FROM"
        f" {shards} s WHERE s.uniqc_task_id = t.task_id), 0), t.task_id, t.backend, 1, 0,"
        " t.status, t.result_json, t.error_message, t.submit_time, t.update_time"
        f"{extra.replace(' ', ' t.')} FROM temp.v5_map m JOIN {tasks} t ON t.task_id = m.old_id"
        " ORDER BY m.new_id",
        f"UPDATE {shards} SET uniqc_task_id = (SELECT new_id FROM temp.v5_map"
        f" WHERE old_id = {shards}.uniqc_task_id)"
        " WHERE uniqc_task_id IN (SELECT old_id FROM temp.v5_map)",
        f"UPDATE {tasks} SET metadata_json = {SQL_METADATA}, task_id = (SELECT new_id"
        f" FROM temp.v5_map WHERE old_id = {tasks}.task_id)"
        " WHERE task_id IN (SELECT old_id FROM temp.v5_map)",
    ]
    next_batch = sa.text(
        f"INSERT INTO temp.v5_map (old_id, new_id) SELECT task_id, {SQL_NEW_ID} FROM"
        f" (SELECT task_id, hex(randomblob(16)) AS h FROM {tasks}"
        f" WHERE substr(task_id, 1, 4) != '{PREFIX}' AND task_id > :after"
        " ORDER BY task_id LIMIT :n)"
    )
    conn.exec_driver_sql("CREATE TEMP TABLE v5_map (old_id TEXT PRIMARY KEY, new_id TEXT)")
    after = ""
    while conn.execute(next_batch, {"after": after, "n": SQL_BATCH_SIZE}).rowcount:
        after = conn.exec_driver_sql("SELECT max(old_id) FROM temp.v5_map").scalar_one()
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("DELETE FROM temp.v5_map")
    conn.exec_driver_sql("DROP TABLE temp.v5_map")


def upgrade() -> None:
    if _offline():
        return
    conn = op.get_bind()
    in_sqlite = uses_sql_path(conn)
    for task_table, shard_table, archived in PAIRS:
        if in_sqlite:
            _rekey_in_sqlite(conn, task_table, shard_table, archived)
            continue
        tasks = _table(task_table, TASK_COLUMNS, archived)
        shards = _table(shard_table, SHARD_COLUMNS, archived)
        for rows in _batches(conn, tasks, legacy=True):
            _rekey_batch(conn, rows, tasks, shards, archived)
    _check_foreign_keys(conn)


def downgrade() -> None:
    if _offline():
        return
    conn = op.get_bind()
    for task_table, shard_table, archived in PAIRS:
        tasks = _table(task_table, TASK_COLUMNS, archived)
        shards = _table(shard_table, SHARD_COLUMNS, archived)
        for rows in _batches(conn, tasks, legacy=False):
            _unkey_batch(conn, rows, tasks, shards)
    _check_foreign_keys(conn)
