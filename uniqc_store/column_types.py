"""Column types shared by the tables and the migrations.

On MySQL/MariaDB key and indexed columns become ``VARCHAR(255)`` with a
binary utf8mb4 collation (ids compare exactly, as on SQLite and PostgreSQL)
and payloads become ``LONGTEXT``; every other engine sees TEXT. Released
migrations use these names, so change them only together with a new revision.

Nothing here imports the MySQL dialect: its package loads every MySQL driver
module, which would cost every process that imports the store. ``LONGTEXT``
is resolved when a MySQL/MariaDB dialect compiles the type, and the tables'
MySQL options when it compiles their ``CREATE TABLE``.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Dialect, String, Table, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateTable
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.types import TypeDecorator, TypeEngine

from .codec import decode_json, encode_json

_MYSQL = ("mysql", "mariadb")

#: Ids, statuses, backends and indexed timestamps: TEXT, or VARCHAR(255) on MySQL.
KeyText: TypeEngine[str] = Text().with_variant(String(255, collation="utf8mb4_bin"), *_MYSQL)


def _payload_type(dialect: Dialect) -> TypeEngine[Any]:
    if dialect.name in _MYSQL:
        from sqlalchemy.dialects.mysql import LONGTEXT  # loaded already: the dialect is in use

        return LONGTEXT(collation="utf8mb4_bin")
    return Text()


class LongText(TypeDecorator[str]):
    """Free text: TEXT, or ``LONGTEXT`` (4 GiB) with the binary utf8mb4 collation on MySQL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _payload_type(dialect)


#: Payloads and free text (``error_message``).
PayloadText: TypeEngine[str] = LongText()


class JSONText(TypeDecorator[Any]):
    """A JSON payload: a Python value in the ORM, the reference's JSON text in the row.

    Binds encode exactly as the repository does (strict JSON, UTF-8 kept as
    is) and reads decode tolerantly (broken text reads as
    ``{"_invalid_json": text}``), so rows written through either are the
    same bytes and files stay interchangeable with the reference store. The
    repository's own statements read and write these columns as text
    (``statements.stored``), having encoded and checked the values first.
    """

    impl = Text
    cache_ok = True

    def __init__(self, *, empty_object: bool = False) -> None:
        super().__init__()
        #: Whether an empty column reads as ``{}`` (metadata) rather than None (results).
        self.empty_object = empty_object

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _payload_type(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None and not self.empty_object:
            return None
        return encode_json({} if value is None else value, field="payload", owner="an ORM row")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return decode_json(value, {} if self.empty_object else None)


#: Column ``info`` flag: on SQLite render the primary key without NOT NULL,
#: as the reference's ``task_id TEXT PRIMARY KEY`` does.
SQLITE_NULLABLE_PK = "uniqc_sqlite_nullable_pk"

#: The table options of every table on MySQL/MariaDB: the migrations pass them
#: to ``create_table``; the Core tables carry ``MYSQL_OPTIONS`` in their ``info``.
MYSQL_TABLE_ARGS: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
}

#: Table ``info`` flag: the table takes ``MYSQL_TABLE_ARGS`` on MySQL/MariaDB.
MYSQL_OPTIONS = "uniqc_mysql_table_options"
_adding_options = threading.Lock()


def add_mysql_table_options(table: Table) -> None:
    """Give ``table`` the ``MYSQL_TABLE_ARGS`` (once; this loads the MySQL dialect).

    ``Table(..., mysql_charset=...)`` validates its options by loading the
    MySQL dialect package, and with it every MySQL driver module, in each
    process that imports the tables. The tables carry ``MYSQL_OPTIONS``
    instead and get their options here: when MySQL/MariaDB first compiles one
    of their ``CREATE TABLE`` statements (so the DDL is always the same), and
    when the migration environment starts (so autogenerate sees them).
    """
    with _adding_options:
        if any(key not in table.dialect_kwargs for key in MYSQL_TABLE_ARGS):
            table.dialect_kwargs.update(MYSQL_TABLE_ARGS)


@compiles(CreateTable, "mysql", "mariadb")
def _mysql_create_table(element: CreateTable, compiler: DDLCompiler, **kw: Any) -> str:
    if element.element.info.get(MYSQL_OPTIONS):
        add_mysql_table_options(element.element)
    return str(compiler.visit_create_table(element, **kw))  # type: ignore[no-untyped-call]


@compiles(CreateColumn, "sqlite")
def _sqlite_column_spec(element: CreateColumn, compiler: DDLCompiler, **kw: Any) -> str:
    spec = str(compiler.visit_create_column(element, **kw))  # type: ignore[no-untyped-call]
    if element.element.info.get(SQLITE_NULLABLE_PK):
        spec = spec.replace(" NOT NULL", "")
    return spec
