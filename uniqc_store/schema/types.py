"""Column types shared by the tables and the migrations.

On MySQL/MariaDB key and indexed columns become ``VARCHAR(255)`` with a
NO PAD binary utf8mb4 collation (ids compare exactly, trailing spaces
included, as on SQLite and PostgreSQL) and payloads become ``LONGTEXT``;
on PostgreSQL the compared columns are ``TEXT COLLATE "C"`` (code point
order whatever the database's default collation; revision 0008); SQLite
sees TEXT.

The released revisions 0001-0005 import ``KeyText``, ``PayloadText``,
``MYSQL_TABLE_ARGS`` and ``SQLITE_NULLABLE_PK`` from here: those names are
frozen at what those revisions created (changing one would change what a
released revision does, docs/adr/0001). The tables use head's types,
``ExactKeyText`` and ``ExactText``, which revision 0006 gave the key and
timestamp columns on MySQL/MariaDB and 0008 on PostgreSQL.

Nothing here imports the MySQL dialect: its package loads every MySQL driver
module, which would cost every process that imports the store. ``LONGTEXT``
is resolved when a MySQL/MariaDB dialect compiles the type, and the tables'
MySQL options come from a copy of the tables made when it first compiles their
``CREATE TABLE`` (``with_mysql_options``).

The two DDL hooks here use SQLAlchemy's compiler extension as its documentation
shows (``@compiles`` on ``CreateTable`` / ``CreateColumn``): each renders a
construct of its own (the copy's ``CREATE TABLE``; a column from its parts) and
changes no table and no compiled text.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, ForeignKeyConstraint, MetaData, String, Table, Text
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable
from sqlalchemy.sql.compiler import DDLCompiler, GenericTypeCompiler
from sqlalchemy.types import TypeDecorator, TypeEngine

from uniqc_store.records import MAX_KEY_LENGTH
from uniqc_store.schema.payload import decode_json, encode_json

_MYSQL = ("mysql", "mariadb")

#: The key type of the released revisions 0001-0005 (frozen): TEXT, or
#: VARCHAR(255) with ``utf8mb4_bin`` on MySQL. That collation is PAD SPACE
#: (``'x' = 'x '``); revision 0006 replaced it with ``ExactKeyText``'s.
KeyText: TypeEngine[str] = Text().with_variant(String(255, collation="utf8mb4_bin"), *_MYSQL)

#: MySQL's first release with a NO PAD binary utf8mb4 collation (``utf8mb4_0900_bin``).
MYSQL_NO_PAD_SINCE = (8, 0, 17)


def exact_key_collation(dialect: Dialect) -> str:
    """The NO PAD binary utf8mb4 collation of the MySQL/MariaDB server ``dialect`` talks to.

    MariaDB (10.2+) calls it ``utf8mb4_nopad_bin``, MySQL (8.0.17+)
    ``utf8mb4_0900_bin``; neither knows the other's name. Which server it
    is shows after the first connect (``is_mariadb``, ``server_version_info``);
    a MySQL dialect that has not connected (``--sql``, a compile without an
    engine) is taken to be MySQL 8. Older MySQL has no NO PAD binary
    collation at all: refused, since ``'x'`` and ``'x '`` would be one key.
    """
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info
    if version is not None and tuple(version[:3]) < MYSQL_NO_PAD_SINCE:
        shown = ".".join(str(part) for part in version)
        raise CompileError(
            f"MySQL {shown} has no NO PAD binary collation, so ids differing only by trailing "
            "spaces would be one key; uniqc-store needs MySQL 8.0.17+ or MariaDB 10.2+"
        )
    return "utf8mb4_0900_bin"


class ExactText(TypeDecorator[str]):
    """Text the store compares or sorts (timestamps), compared exactly on every engine.

    TEXT everywhere; on MySQL/MariaDB with the server's NO PAD binary
    collation (``exact_key_collation``), like the key columns it is compared
    with: an expression that mixes a PAD and a NO PAD column (``coalesce(
    update_time, submit_time)``) is refused there (error 1267, "Illegal mix
    of collations"). Payloads (``LongText``, ``JSONText``) are never
    compared and keep ``utf8mb4_bin``. On PostgreSQL ``TEXT COLLATE "C"``
    (revision 0008): byte order, so a database created with a linguistic
    locale still sorts ids, and the id search's key range, by code point.
    """

    impl = Text
    cache_ok = True


class ExactKeyText(ExactText):
    """Ids, statuses, backends and indexed timestamps: TEXT, or ``VARCHAR(255)``
    with the NO PAD binary collation on MySQL/MariaDB (keys and indexes need a
    length there). The type's own compilation renders it, so DDL,
    ``create_all`` and autogenerate agree."""

    cache_ok = True


@compiles(ExactText, "mysql", "mariadb")
def _exact_text_on_mysql(_type: ExactText, compiler: GenericTypeCompiler, **_kw: Any) -> str:
    return f"TEXT COLLATE {exact_key_collation(compiler.dialect)}"


@compiles(ExactKeyText, "mysql", "mariadb")
def _exact_key_on_mysql(_type: ExactKeyText, compiler: GenericTypeCompiler, **_kw: Any) -> str:
    return f"VARCHAR({MAX_KEY_LENGTH}) COLLATE {exact_key_collation(compiler.dialect)}"


#: What ``ExactText`` and ``ExactKeyText`` are on PostgreSQL (revision 0008): TEXT that
#: compares by byte, i.e. by code point in UTF-8, whatever the database's default collation.
POSTGRESQL_EXACT_TEXT = 'TEXT COLLATE "C"'


@compiles(ExactText, "postgresql")
@compiles(ExactKeyText, "postgresql")
def _exact_text_on_postgresql(_type: ExactText, _compiler: GenericTypeCompiler, **_kw: Any) -> str:
    return POSTGRESQL_EXACT_TEXT


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
#: as the reference's ``task_id TEXT PRIMARY KEY`` does (SQLite lets such a key
#: hold NULL, and ``PRAGMA table_info`` shows it nullable in the reference's
#: files; the released revisions 0001 and 0002 create their tables with it).
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


#: Index ``info`` key: ``{column: characters}``, the prefix a MySQL/MariaDB index holds
#: of a ``TEXT`` column (``mysql_length``), given to the copy only, for the same reason.
MYSQL_INDEX_LENGTHS = "uniqc_mysql_index_lengths"


def with_mysql_options(metadata: MetaData) -> MetaData:
    """A copy of ``metadata`` whose ``MYSQL_OPTIONS`` tables carry ``MYSQL_TABLE_ARGS``
    (made once per ``metadata``; this loads the MySQL dialect).

    ``Table(..., mysql_charset=...)`` validates its options by loading the
    MySQL dialect package, and with it every MySQL driver module, in each
    process that imports the tables. So the tables only carry the
    ``MYSQL_OPTIONS`` flag, and MySQL's DDL is that of this copy (made with
    ``Table.to_metadata``; the options given as ``Table(..., extend_existing=True)``
    does): the tables themselves are never changed. The migration environment
    hands the copy to autogenerate, so a new table's ``create_table`` shows the
    options, as the revisions pass them. The copy is built again if ``metadata``
    gains a table (two threads may build it at once: each gets a whole copy).
    """
    names = tuple(metadata.tables)
    copy = _copies.get(metadata)
    if copy is None or copy[0] != names:
        copy = (names, _copy_with_options(metadata))
        _copies[metadata] = copy
    return copy[1]


_copies: weakref.WeakKeyDictionary[MetaData, tuple[tuple[str, ...], MetaData]] = (
    weakref.WeakKeyDictionary()
)


def _copy_with_options(metadata: MetaData) -> MetaData:
    copies = MetaData(schema=metadata.schema, naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(copies)  # every table, so the copies' foreign keys resolve
    for table in metadata.tables.values():
        if table.info.get(MYSQL_OPTIONS):
            Table(table.name, copies, schema=table.schema, extend_existing=True, **MYSQL_TABLE_ARGS)
        copied = {index.name: index for index in copies.tables[table.key].indexes}
        for index in table.indexes:
            lengths = index.info.get(MYSQL_INDEX_LENGTHS)
            if lengths:
                for dialect in _MYSQL:
                    copied[index.name].dialect_kwargs[f"{dialect}_length"] = dict(lengths)
    return copies


@compiles(CreateIndex, "mysql", "mariadb")
def _mysql_create_index(element: CreateIndex, compiler: DDLCompiler, **kw: Any) -> str:
    """An index with ``MYSQL_INDEX_LENGTHS`` is made as its copy's (with the lengths)."""
    index = element.element
    table = index.table
    if index.info.get(MYSQL_INDEX_LENGTHS) and table is not None and table.metadata is not None:
        copy = with_mysql_options(table.metadata).tables[table.key]
        (index,) = (i for i in copy.indexes if i.name == element.element.name)
        element = CreateIndex(index, if_not_exists=element.if_not_exists)
    return str(compiler.visit_create_index(element, **kw))  # type: ignore[no-untyped-call]


@compiles(CreateTable, "mysql", "mariadb")
def _mysql_create_table(element: CreateTable, compiler: DDLCompiler, **kw: Any) -> str:
    """A flagged table's ``CREATE TABLE`` is its copy's, which has the options."""
    table = element.element
    if table.info.get(MYSQL_OPTIONS) and table.metadata is not None:
        copy = with_mysql_options(table.metadata).tables[table.key]
        element = CreateTable(
            copy,
            include_foreign_key_constraints=_their_copies(
                copy, element.include_foreign_key_constraints
            ),
            if_not_exists=element.if_not_exists,
        )
    return str(compiler.visit_create_table(element, **kw))  # type: ignore[no-untyped-call]


def _their_copies(
    copy: Table, constraints: Sequence[ForeignKeyConstraint] | None
) -> list[ForeignKeyConstraint] | None:
    """The copy's foreign keys matching ``constraints`` (``create_all`` names those
    it creates inline); None for all of them, as ``CreateTable`` takes it."""
    if constraints is None:
        return None
    keys = {tuple(constraint.column_keys) for constraint in constraints}
    return [fk for fk in copy.foreign_key_constraints if tuple(fk.column_keys) in keys]


@compiles(CreateColumn, "sqlite")
def _sqlite_column_spec(element: CreateColumn, compiler: DDLCompiler, **kw: Any) -> str | None:
    """A ``SQLITE_NULLABLE_PK`` column is its name and type (the reference's
    nullable key), rendered from its parts as SQLAlchemy's ``CreateColumn``
    documentation does; any other column as SQLAlchemy renders it."""
    column = element.element
    if not column.info.get(SQLITE_NULLABLE_PK):
        return compiler.visit_create_column(element, **kw)  # type: ignore[no-any-return,no-untyped-call]
    if not column.primary_key or column.server_default is not None or column.computed:
        raise CompileError(
            f"{SQLITE_NULLABLE_PK} is for a primary key column without a default or "
            f"expression; {column} has one"
        )
    type_ = compiler.type_compiler.process(column.type, type_expression=column)
    spec = f"{compiler.preparer.format_column(column)} {type_}"
    constraints = " ".join(compiler.process(constraint) for constraint in column.constraints)
    return f"{spec} {constraints}" if constraints else spec
