"""Look at a SQLite file before anything can write to it.

Opening a file through the store's engine already writes (the connect hook
switches it to WAL, which rewrites header bytes 18-19 and creates ``-wal`` /
``-shm``), so whether a file is ours is decided here first: from the header
bytes, then from ``sqlite_master`` read on a read-only connection that creates
no file beside it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from uniqc_store.errors import DatabaseUnavailableError, ForeignDatabaseError
from uniqc_store.records import APPLICATION_ID
from uniqc_store.schema.versions import LEGACY_VERSION_TABLE, OUR_REVISIONS, version_table

_SQLITE_MAGIC = b"SQLite format 3\x00"
#: How long the look at ``sqlite_master`` waits for a writer (the store's busy timeout).
READ_TIMEOUT_S = 30.0
#: The tables a task database may hold (``sqlite_*`` are SQLite's own).
STORE_TABLES = frozenset({"tasks", "archived_tasks", "task_shards", "archived_task_shards"})


@dataclass(frozen=True)
class SQLiteHeader:
    """The two header fields the store cares about, read without opening the file."""

    application_id: int
    user_version: int
    wal: bool = False


@dataclass(frozen=True)
class SQLiteContents:
    """What a file holds, as far as deciding whether it is a task database goes."""

    header: SQLiteHeader
    tables: frozenset[str]
    our_revisions: frozenset[str]

    @property
    def foreign_tables(self) -> list[str]:
        """Tables that are neither the store's, a version table, nor SQLite's own."""
        ours = STORE_TABLES | {version_table(), LEGACY_VERSION_TABLE}
        return sorted(t for t in self.tables if t not in ours and not t.startswith("sqlite_"))

    @property
    def has_store_version(self) -> bool:
        """A row of our chain in a version table, or a reference file's ``user_version``."""
        reference_file = self.header.user_version > 0 and "tasks" in self.tables
        return bool(self.our_revisions) or reference_file


def read_sqlite_header(path: Path) -> SQLiteHeader | None:
    """Read ``application_id`` / ``user_version`` straight from the file header.

    Returns None when the file does not exist or is empty (SQLite makes a new
    database there). A file that is not SQLite is refused.
    """
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, no permission, ...
        raise DatabaseUnavailableError(
            f"cannot read the task database file {path}: {exc.strerror or exc}. "
            "Point the store at a readable file (cache_dir=, url= or UNIQC_STORE_URL)."
        ) from None
    if not header:
        return None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise ForeignDatabaseError(
            f"{path} is not a SQLite database; refusing to touch it. "
            "Point the store at another file (cache_dir=, url= or UNIQC_STORE_URL)."
        )
    return SQLiteHeader(
        application_id=int.from_bytes(header[68:72], "big"),
        user_version=int.from_bytes(header[60:64], "big", signed=True),
        wal=header[18] == 2 and header[19] == 2,
    )


def read_only_connection(path: Path, header: SQLiteHeader) -> sqlite3.Connection:
    """A connection that cannot write the file or create anything beside it.

    A WAL file with no ``-wal`` beside it has nothing outside the main file, so
    it is opened ``immutable`` (otherwise SQLite would create ``-shm``/``-wal``
    even for a read-only connection); a live ``-wal`` is read through ``mode=ro``.
    """
    live_wal = header.wal and Path(f"{path}-wal").exists()
    mode = "mode=ro" if live_wal else "immutable=1"
    uri = f"file:{quote(str(path.resolve()))}?{mode}"
    return sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT_S, check_same_thread=False)


_SQLITE_CORRUPT = 11  # the result code (typeshed lacks sqlite3.SQLITE_CORRUPT)


def read_contents(path: Path) -> SQLiteContents | None:
    """The header, the table names and our revisions of an existing file (None if new)."""
    header = read_sqlite_header(path)
    if header is None:
        return None
    try:
        conn = read_only_connection(path, header)
        try:
            tables = frozenset(
                str(row[0])
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            )
            revisions: set[str] = set()
            for table in (version_table(), LEGACY_VERSION_TABLE):
                if table in tables:
                    rows = conn.execute(f"SELECT version_num FROM {table}").fetchall()
                    revisions |= {str(r[0]) for r in rows if str(r[0]) in OUR_REVISIONS}
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:  # locked past the timeout, unreadable, ...
        raise DatabaseUnavailableError(
            f"cannot read the task database file {path}: {exc}. Nothing was written; "
            "try again when the process holding it is done."
        ) from None
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_CORRUPT:
            raise DatabaseUnavailableError(
                f"the task database file {path} is damaged ({exc}); nothing was written. "
                "Restore it from a backup (uniqc-store export makes one) or move it aside."
            ) from exc
        raise ForeignDatabaseError(
            f"{path} cannot be read as a SQLite database ({exc}); refusing to touch it. "
            "Point the store at another file."
        ) from None
    return SQLiteContents(header, tables, frozenset(revisions))


def check_sqlite_file(path: Path, *, allow_foreign_tables: bool = False) -> SQLiteHeader | None:
    """Refuse a SQLite file that belongs to another application; nothing is written.

    Refused: another ``application_id``; tables that are not the store's with no
    store schema version (no revision of ours, ``user_version`` 0).
    ``allow_foreign_tables`` is for an upgrade run on purpose (``alembic upgrade``,
    ``uniqc-store upgrade --allow-foreign-tables``), which may add the store's
    tables to a database an application shares with it.
    """
    header = read_sqlite_header(path)
    if header is None:
        return None
    if header.application_id not in (0, APPLICATION_ID):
        raise ForeignDatabaseError(
            f"{path} has application_id 0x{header.application_id:08x}, not "
            f"0x{APPLICATION_ID:08x} (UNIC): it belongs to another application and "
            "was left untouched. Point the store at another file."
        )
    if allow_foreign_tables:
        return header
    contents = read_contents(path)
    if contents is not None and contents.foreign_tables and not contents.has_store_version:
        shown = ", ".join(contents.foreign_tables[:5])
        more = "" if len(contents.foreign_tables) <= 5 else ", ..."
        raise ForeignDatabaseError(
            f"{path} holds tables that are not the task store's ({shown}{more}) and no "
            "task store schema: it belongs to another application and was left untouched. "
            "Point the store at another file (to add the store's tables to this database on "
            "purpose, run `uniqc-store upgrade --allow-foreign-tables` or `alembic upgrade "
            "head` with uniqc-store's migrations)."
        )
    return header
