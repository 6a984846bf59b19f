"""v8: keys sort and compare by code point on PostgreSQL too (``COLLATE "C"``).

Schema, PostgreSQL only: every column the store compares or sorts gets the
``"C"`` collation. Before this revision those columns had the database's
default collation, which ``CREATE DATABASE`` takes from the server's locale:
in a database made with an ICU or glibc locale such as ``en-US``, text compares
linguistically (``'uqt_B' > 'uqt_a'``, case and punctuation weighed apart), so
ids ordered differently from SQLite and MySQL/MariaDB, and the dashboard's id
search (``prefix <= task_id < prefix_end``, issue 29) was a range of that order,
not of the ids starting with the prefix. ``"C"`` compares the bytes, which in
UTF-8 is code point order: SQLite's ``BINARY``, MySQL/MariaDB's NO PAD binary
collations. The columns are 0006's, for the same reasons:

- the keys ``task_id`` (``tasks``, ``archived_tasks``), ``uniqc_task_id`` and
  ``platform_task_id`` (``task_shards``, ``archived_task_shards``): the id order,
  the search's key range, the foreign key;
- ``backend`` and ``status`` of all four: their order is what the tally, the CLI's
  ``stats`` and the dashboard's charts list, and they lead 0007's composite indexes
  (``(status, backend, submit_time)``), whose order must be one order on every engine;
- the timestamps (``submit_time``, ``update_time``, ``archived_at``): the list and
  page order and the retention cut-offs compare them, and ISO texts of mixed
  precision order differently under a linguistic collation (in an ICU ``en-US``
  database ``'...00.5+00:00' < '...00+00:00'``: ``'.'`` sorts before ``'+'``; by code
  point it is after). Giving them ``"C"`` as well keeps ``coalesce(update_time,
  submit_time)`` in one collation, as 0006 did for MySQL/MariaDB (PostgreSQL would
  not refuse the mix: a column's own collation wins over the database default).

Payloads (``result_json``, ``metadata_json``, ``error_message``) are never compared
and keep the default. One ``ALTER TABLE`` per table, every column in it, so each
index is rebuilt once; the rows are not rewritten (TEXT to TEXT, only the collation
changes), but the primary keys and indexes on those columns are rebuilt, so on a large
database run it in a maintenance window. The foreign key
``fk_task_shards_uniqc_task_id_tasks`` is dropped first and added back (same name,
``ON DELETE CASCADE``) once both of its ends are ``"C"``: its two columns change in
two statements, and between them they would disagree. PostgreSQL runs DDL in the
revision's transaction: a failure leaves the schema as it was.

MySQL/MariaDB: nothing to change; since 0006 these columns have the server's NO PAD
binary utf8mb4 collation (``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on
MySQL 8.0.17+), which compares code points already. SQLite compares with ``BINARY``
(code points) already: no table changes, ``PRAGMA user_version`` becomes 8 (every
revision id is its schema version); the reference store opens such files as they are.

Downgrade, PostgreSQL: the same columns get the database's default collation back
(``COLLATE pg_catalog."default"``, what 0001-0007 created them with), the foreign key
dropped and added back the same way; no row changes. Two ids that are distinct under
``"C"`` stay distinct: PostgreSQL's ICU and glibc default collations are deterministic
(ties are broken by the bytes), so no key collides on the way down. Elsewhere it only
stamps the version.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The collation of head's compared columns on PostgreSQL.
BYTE_ORDER = '"C"'
#: What 0001-0007 gave them: the database's default collation.
DATABASE_DEFAULT = 'pg_catalog."default"'
#: The columns this revision changes, by table: 0006's, every one ``TEXT NOT NULL``.
COLUMNS = {
    "tasks": ("task_id", "backend", "status", "submit_time", "update_time"),
    "archived_tasks": (
        "task_id",
        "backend",
        "status",
        "submit_time",
        "update_time",
        "archived_at",
    ),
    "task_shards": (
        "uniqc_task_id",
        "platform_task_id",
        "backend",
        "status",
        "submit_time",
        "update_time",
    ),
    "archived_task_shards": (
        "uniqc_task_id",
        "platform_task_id",
        "backend",
        "status",
        "submit_time",
        "update_time",
        "archived_at",
    ),
}
FOREIGN_KEY = "fk_task_shards_uniqc_task_id_tasks"


def _collate(collation: str) -> None:
    """Every column of ``COLUMNS`` to ``collation``, one ALTER per table, the foreign
    key between ``task_shards`` and ``tasks`` dropped around them."""
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_constraint(FOREIGN_KEY, "task_shards", type_="foreignkey")
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f"ALTER COLUMN {column} TYPE TEXT COLLATE {collation}" for column in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    op.create_foreign_key(
        FOREIGN_KEY, "task_shards", "tasks", ["uniqc_task_id"], ["task_id"], ondelete="CASCADE"
    )


def upgrade() -> None:
    _collate(BYTE_ORDER)


def downgrade() -> None:
    _collate(DATABASE_DEFAULT)
