"""v6: keys and timestamps compare exactly on MySQL/MariaDB (NO PAD collations).

Schema: on MySQL/MariaDB every column the store compares or sorts goes
from ``utf8mb4_bin``, which is PAD SPACE (``'x' = 'x '``, so the two were one
primary key), to the server's NO PAD binary collation: ``utf8mb4_nopad_bin``
on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8.0.17+ (older MySQL has none and
is refused before anything changes). Those are the ``VARCHAR(255)`` key and
indexed columns (``task_id``, ``backend``, ``status``, ``submit_time`` of
``tasks`` and ``archived_tasks``; ``uniqc_task_id``, ``platform_task_id``,
``backend``, ``status`` of ``task_shards`` and ``archived_task_shards``) and
the ``TEXT`` timestamps (``update_time``, ``archived_at``, the shards'
``submit_time``), which are compared with them and may not mix collations
in one expression (error 1267). Payloads (``result_json``,
``metadata_json``, ``error_message``) are never compared and keep
``utf8mb4_bin``, as does each table's default. One ``ALTER TABLE`` per
table; the foreign key ``fk_task_shards_uniqc_task_id_tasks`` is dropped
around them and added back, since both of its ends must share a collation.
SQLite and PostgreSQL compare text exactly already: no table changes there
(SQLite's ``user_version`` still becomes 6: every revision id is its schema
version).
Data: on MySQL/MariaDB, a shard whose ``uniqc_task_id`` matched its task only
up to trailing spaces (``'x '`` for ``'x'``, which PAD SPACE let through) is
re-pointed at the task's exact id, so it stays with its task and the exact
foreign key holds; no other value changes.
Downgrade: first looks for keys that differ only by trailing spaces
(``utf8mb4_bin`` would make each such group one key) and refuses, naming
them, with nothing changed; otherwise restores ``utf8mb4_bin`` on the same
columns, the foreign key dropped and added back the same way. Shards the
upgrade re-pointed keep their exact parent id.
MySQL/MariaDB commit each DDL statement as it runs: a run that stopped
half-way is safe to repeat (a foreign key already dropped is not dropped
again, a column already converted is converted again, harmlessly).
In ``--sql`` (offline) mode the server is not known: the collation follows
the URL (``mariadb://`` is MariaDB, ``mysql://`` is taken to be MySQL 8) and
the downgrade's check is a comment, not a query.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import context, op

from uniqc_store.errors import StoreError

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: What 0001-0005 gave every key column on MySQL/MariaDB (PAD SPACE).
PAD_COLLATION = "utf8mb4_bin"
_KEY, _TIME = "VARCHAR(255)", "TEXT"
#: The columns this revision converts, by table (key column first), with their
#: types; every one is NOT NULL without a default.
COLUMNS = {
    "tasks": (
        ("task_id", _KEY),
        ("backend", _KEY),
        ("status", _KEY),
        ("submit_time", _KEY),
        ("update_time", _TIME),
    ),
    "archived_tasks": (
        ("task_id", _KEY),
        ("backend", _KEY),
        ("status", _KEY),
        ("submit_time", _KEY),
        ("update_time", _TIME),
        ("archived_at", _TIME),
    ),
    "task_shards": (
        ("uniqc_task_id", _KEY),
        ("platform_task_id", _KEY),
        ("backend", _KEY),
        ("status", _KEY),
        ("submit_time", _TIME),
        ("update_time", _TIME),
    ),
    "archived_task_shards": (
        ("uniqc_task_id", _KEY),
        ("platform_task_id", _KEY),
        ("backend", _KEY),
        ("status", _KEY),
        ("submit_time", _TIME),
        ("update_time", _TIME),
        ("archived_at", _TIME),
    ),
}
#: (task table, its shard table); only the live pair has a foreign key.
PAIRS = (("tasks", "task_shards"), ("archived_tasks", "archived_task_shards"))
FOREIGN_KEY = "fk_task_shards_uniqc_task_id_tasks"
#: How many colliding groups a refused downgrade names.
SHOWN_COLLISIONS = 10


def _on_mysql() -> bool:
    return op.get_context().dialect.name in ("mysql", "mariadb")


def _no_pad_collation(dialect: sa.Dialect) -> str:
    """The server's NO PAD binary utf8mb4 collation (this revision's own copy of the
    rule; head's key type applies the same one, and a test holds the two together)."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info
    if version is not None and tuple(version[:3]) < (8, 0, 17):
        shown = ".".join(str(part) for part in version)
        raise StoreError(
            f"MySQL {shown} has no NO PAD binary collation (utf8mb4_0900_bin came in 8.0.17), "
            "so ids differing only by trailing spaces would stay one key; upgrade the server "
            "to MySQL 8.0.17+ (nothing was changed)"
        )
    return "utf8mb4_0900_bin"


def _has_foreign_key() -> bool:
    if context.is_offline_mode():  # --sql: no database to look at; the key is there
        return True
    keys = sa.inspect(op.get_bind()).get_foreign_keys("task_shards")
    return any(key["name"] == FOREIGN_KEY for key in keys)


def _convert_key_columns(collation: str) -> None:
    """Every column of ``COLUMNS`` to ``collation``, one rebuild per table, the foreign
    key dropped around it (MariaDB refuses to change a column a foreign key uses)."""
    if _has_foreign_key():
        op.drop_constraint(FOREIGN_KEY, "task_shards", type_="foreignkey")
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f"MODIFY {column} {type_} CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
            for column, type_ in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    if context.is_offline_mode() or not _has_foreign_key():
        op.create_foreign_key(
            FOREIGN_KEY, "task_shards", "tasks", ["uniqc_task_id"], ["task_id"], ondelete="CASCADE"
        )


def _repoint_padded_shards() -> None:
    """Shards that named their task only up to trailing spaces get its exact id.

    The comparison is forced to the PAD SPACE collation, so it finds the same
    parent the old schema did whichever collation the columns have now (a
    repeated run may meet some already converted).
    """
    for tasks, shards in PAIRS:
        op.execute(
            f"UPDATE {shards} s JOIN {tasks} t"
            f" ON t.task_id = s.uniqc_task_id COLLATE {PAD_COLLATION}"
            " SET s.uniqc_task_id = t.task_id"
            " WHERE LENGTH(s.uniqc_task_id) <> LENGTH(t.task_id)"
        )


def _key_groups(conn: sa.Connection, table: str, key: str) -> Iterator[list[str]]:
    """Groups of two or more rows of ``table`` whose key differs only by trailing spaces.

    Each row shows as its key (and shard index, for shards). All members of
    such a group but at most one end in a space, so only those rows are read
    (``LIKE`` does not pad), then the unpadded ids they stand for.
    """
    extra = ", shard_index" if key == "uniqc_task_id" else ""
    padded = conn.execute(sa.text(f"SELECT {key}{extra} FROM {table} WHERE {key} LIKE '% '"))
    groups: dict[tuple[object, ...], set[tuple[object, ...]]] = {}
    for row in padded:
        groups.setdefault((row[0].rstrip(" "), *row[1:]), set()).add(tuple(row))
    bases = sorted({group[0] for group in groups})
    for start in range(0, len(bases), 1000):
        exact = conn.execute(
            sa.text(f"SELECT {key}{extra} FROM {table} WHERE {key} IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": bases[start : start + 1000]},
        )
        for row in exact:
            if tuple(row) in groups:
                groups[tuple(row)].add(tuple(row))
    for members in groups.values():
        if len(members) > 1:
            yield [_shown(member) for member in sorted(members, key=lambda m: (len(m[0]), m))]


def _shown(member: tuple[object, ...]) -> str:
    return repr(member[0]) if len(member) == 1 else f"({member[0]!r}, {member[1]})"


def _refuse_colliding_keys(conn: sa.Connection) -> None:
    """Raise, naming them, if any two keys differ only by trailing spaces."""
    found = [
        f"{table}: {' and '.join(group)}"
        for table, columns in COLUMNS.items()
        for group in _key_groups(conn, table, columns[0][0])
    ]
    if not found:
        return
    more = f"; and {len(found) - SHOWN_COLLISIONS} more" if len(found) > SHOWN_COLLISIONS else ""
    raise StoreError(
        f"cannot downgrade below 0006: {PAD_COLLATION} ignores trailing spaces and these keys "
        f"differ only by them, so each group would become one key: "
        f"{'; '.join(found[:SHOWN_COLLISIONS])}{more}. Rename or delete all but one of each, "
        "then downgrade again (nothing was changed)"
    )


def upgrade() -> None:
    if not _on_mysql():
        return
    collation = _no_pad_collation(op.get_context().dialect)
    _repoint_padded_shards()
    _convert_key_columns(collation)


def downgrade() -> None:
    if not _on_mysql():
        return
    if context.is_offline_mode():
        op.get_context().impl.static_output(
            "-- 0006 downgrade: first check that no two ids differ only by trailing spaces"
            f"\n-- ({PAD_COLLATION} would make them one key); the online downgrade refuses then."
        )
    else:
        _refuse_colliding_keys(op.get_bind())
    _convert_key_columns(PAD_COLLATION)
