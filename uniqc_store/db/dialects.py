"""What differs between the three database families, in one place.

A frozen record per family holds the facts the executor and the translator
read about its errors: which ask for the transaction to run again, which mean
the database is busy, unreachable, or that a statement was too large. Code
that must branch on the engine asks :func:`family_of` instead of comparing
dialect names (MariaDB is the MySQL family under its own dialect name).

Besides errors it holds the family's SQL that callers above the executor
would otherwise write per dialect (the database's size, for ``stats``).

The column types (``schema/types.py``) keep their own per-dialect compile
hooks, since the schema sits below this layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """One database family and the meaning of its error codes.

    Codes are SQLite primary result codes, PostgreSQL SQLSTATEs or MySQL error
    numbers, whichever the family's drivers report (:meth:`code_of`).
    """

    name: str
    #: The dialect names (``engine.dialect.name``, a URL's backend) of the family.
    backends: frozenset[str]
    #: The server aborted the transaction and asks for it to run again.
    retry: frozenset[int | str] = frozenset()
    #: A lock another connection held past its bound (after any retries).
    busy: frozenset[int | str] = frozenset()
    #: The database cannot be reached, used or written (connection, login, disk, mode).
    unavailable: frozenset[int | str] = frozenset()
    #: SQLSTATE classes (first two characters) that all mean ``unavailable``.
    unavailable_classes: tuple[str, ...] = ()
    #: A statement larger than the server takes.
    too_large: frozenset[int | str] = frozenset()
    #: The server hung up on the statement (for a write: probably too large).
    hung_up: frozenset[int | str] = frozenset()
    #: (code, text in its message) of errors that also ask for another run, where the
    #: code alone means something permanent.
    retry_when: tuple[tuple[int | str, str], ...] = ()
    #: The bytes the store's tables and indexes take on the server (one value, or NULL);
    #: None where the database is a file, whose size is read from the file system.
    size_sql: str | None = None

    def asks_for_retry(self, orig: BaseException | None) -> bool:
        """Whether the server aborted the transaction and asks for it to run again."""
        code = self.code_of(orig)
        if code in self.retry:
            return True
        return any(code == c and text in str(orig) for c, text in self.retry_when)

    def code_of(self, orig: BaseException | None) -> int | str | None:
        """The family's code of a driver exception, or None if it carries none."""
        if orig is None:
            return None
        if self is SQLITE:
            code = getattr(orig, "sqlite_errorcode", None)
            return None if code is None else int(code) & 0xFF  # the primary result code
        if self is POSTGRESQL:
            sqlstate: str | None = getattr(orig, "sqlstate", None)
            return sqlstate
        args: tuple[Any, ...] = getattr(orig, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def is_unavailable(self, code: int | str | None) -> bool:
        """Whether ``code`` says the database cannot be reached or used."""
        if code is None:
            return False
        return code in self.unavailable or (
            isinstance(code, str) and code[:2] in self.unavailable_classes
        )


SQLITE = Family(
    name="sqlite",
    backends=frozenset({"sqlite"}),
    busy=frozenset({5, 6}),  # BUSY, LOCKED
    unavailable=frozenset({8, 10, 11, 13, 14, 26}),  # READONLY IOERR CORRUPT FULL CANTOPEN NOTADB
)
POSTGRESQL = Family(
    name="postgresql",
    backends=frozenset({"postgresql"}),
    retry=frozenset({"40001", "40P01"}),  # serialization failure, deadlock
    busy=frozenset({"40001", "40P01", "55P03", "57014"}),  # + lock not available, cancelled
    unavailable=frozenset({"25006"}),  # read-only transaction
    unavailable_classes=("08", "53", "57", "58", "28", "3D", "XX"),
    size_sql="SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
    "WHERE c.relname IN ('tasks', 'archived_tasks', 'task_shards', 'archived_task_shards') "
    "AND pg_table_is_visible(c.oid)",
)
MYSQL = Family(
    name="mysql",
    backends=frozenset({"mysql", "mariadb"}),
    # 1213: deadlock, and a Galera certification conflict. Not 1205: a lock wait that
    # timed out would wait as long again.
    retry=frozenset({1213}),
    busy=frozenset({1205, 1213}),  # lock wait timeout, deadlock (after the retries)
    unavailable=frozenset({1044, 1045, 1049, 1290, 2002, 2003, 2005, 2006, 2013, 1021, 1114}),
    too_large=frozenset({1153, 1301}),
    hung_up=frozenset({2006, 2013}),
    # MariaDB Galera: a statement that fires a trigger while the node reloads the table's
    # triggers fails as a syntax error (1064) with this text; nothing was done, and the
    # same statement runs a moment later (seen once in the Galera soak, after 0009).
    retry_when=((1064, "Unknown trigger has an error in its body"),),
    size_sql="SELECT sum(data_length + index_length) FROM information_schema.tables "
    "WHERE table_schema = DATABASE()",
)
FAMILIES = (SQLITE, POSTGRESQL, MYSQL)
#: The dialect names of the families that run on a server (not a file).
SERVER_BACKENDS = POSTGRESQL.backends | MYSQL.backends


def family_of(backend: str) -> Family:
    """The family of a dialect name or URL backend (``"mariadb"`` is MySQL's)."""
    for family in FAMILIES:
        if backend in family.backends:
            return family
    raise ValueError(
        f"uniqc-store runs on SQLite, PostgreSQL and MySQL/MariaDB, not {backend!r} databases"
    )


def is_mysql(backend: str) -> bool:
    """Whether a dialect name or URL backend is MySQL or MariaDB."""
    return backend in MYSQL.backends
