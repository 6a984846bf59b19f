"""Where the database is and how we connect to it.

URL resolution follows the contract (engine > url > cache_dir >
``UNIQC_STORE_URL`` > ``~/.uniqc/cache/tasks.sqlite``). SQLite engines get
SQLAlchemy's pysqlite transactional recipe (the driver's own transaction
handling sends no ``BEGIN`` before DDL), WAL, a busy timeout and foreign keys.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

import sqlalchemy
from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from . import door
from .errors import DriverNotInstalledError
from .records import DB_FILENAME, DEFAULT_CACHE_DIR
from .redaction import MASK, mask_text, names_a_credential
from .sqlite_files import check_sqlite_file
from .timeouts import DEFAULT_TIMEOUTS, Timeouts

URL_ENV_VAR = "UNIQC_STORE_URL"
#: Execution option for SQLite: how the ``begin`` hook opens a transaction:
#: ``"IMMEDIATE"`` (writers), ``"DEFERRED"`` (the default) or None (no BEGIN:
#: single-statement reads in autocommit, each statement its own snapshot).
SQLITE_BEGIN = "uniqc_sqlite_begin"
#: Server pools: sized for the API's concurrency (40 requests at once), and a
#: checkout that waits longer than ``pool_timeout`` is ``DatabaseBusyError``.
SERVER_POOL_DEFAULTS: dict[str, Any] = {"pool_size": 10, "max_overflow": 30, "pool_timeout": 5}

_SQLITE_BUSY = 5  # the result code (typeshed lacks sqlite3.SQLITE_BUSY)


def default_cache_dir() -> Path:
    """``~/.uniqc/cache`` (created), else ``<tmp>/uniqc/cache`` like the reference."""
    for candidate in (DEFAULT_CACHE_DIR, Path(tempfile.gettempdir()) / "uniqc" / "cache"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise OSError(f"no usable cache directory: {DEFAULT_CACHE_DIR} is not writable")


def sqlite_url_for(path: Path) -> URL:
    """The SQLAlchemy URL of a SQLite file."""
    return URL.create("sqlite+pysqlite", database=str(path))


def resolve_url(
    url: str | URL | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    create_dirs: bool = True,
) -> URL:
    """Pick the database: ``url`` > ``cache_dir`` > ``$UNIQC_STORE_URL`` > the default file.

    ``create_dirs=False`` only names the file (commands that must not create
    anything): the default is then whichever of the two default files exists.
    """
    if url is not None:
        return parse_url(url)
    if cache_dir is not None:
        directory = Path(cache_dir).expanduser()
        if create_dirs:
            directory.mkdir(parents=True, exist_ok=True)
        return sqlite_url_for(directory / DB_FILENAME)
    from_env = os.environ.get(URL_ENV_VAR)
    if from_env:
        return parse_url(from_env)
    if not create_dirs:
        fallback = Path(tempfile.gettempdir()) / "uniqc" / "cache" / DB_FILENAME
        default = DEFAULT_CACHE_DIR / DB_FILENAME
        return sqlite_url_for(fallback if fallback.exists() and not default.exists() else default)
    return sqlite_url_for(default_cache_dir() / DB_FILENAME)


def parse_url(url: str | URL) -> URL:
    """Parse a URL; an error never shows it, since it may hold a password.

    SQLAlchemy splits user-info at the first ``@``, so an unencoded ``@`` in
    a password turns the rest of it into the host name (which the driver
    would then print): such URLs are refused, with the fix.
    """
    parsed = url if isinstance(url, URL) else _make_url(url)
    if parsed is None:
        raise ValueError(
            f"not a database URL ({_scheme_of(url)}...; the rest is not shown as it may hold "
            "a password): expected e.g. sqlite:///path/tasks.sqlite or "
            "postgresql+psycopg://user:password@host/db, with @ : / in the password "
            "percent-encoded (%40 %3A %2F)"
        )
    if parsed.host and "@" in parsed.host:
        raise ValueError(
            f"the {parsed.drivername} URL has an unencoded '@' in its password (or user "
            f"name): percent-encode it as %40, e.g. {parsed.drivername}://user:p%40ss@host/db"
        )
    return parsed


def _make_url(text: str) -> URL | None:
    """``make_url``, or None; outside the ``except`` so no exception chain keeps the text."""
    try:
        return make_url(text)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def _scheme_of(url: object) -> str:
    """The part of a URL that cannot hold a password: its scheme, if it has one."""
    head, sep, _ = str(url).partition("://")
    return f"{head}://" if sep and head.replace("+", "").isalnum() else "''"


def redact_text(text: str) -> str:
    """Text (a URL, a message, a driver's error) with every credential in it masked.

    One set of rules for everything: :func:`uniqc_store.redaction.mask_text`
    (user-info passwords, also holding ``:`` or ``@``, ``password=`` query
    parameters, tokens).
    """
    return mask_text(text)


def redact(url: str | URL) -> str:
    """The URL as text, with its password (in the user-info or the query) shown as ``***``."""
    if not isinstance(url, URL):
        return redact_text(url)
    if url.host and "@" in url.host:  # an unencoded "@": the host starts with password text
        url = url.set(host=url.host.rpartition("@")[2])
    query = {key: MASK if names_a_credential(key) else value for key, value in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return shown.replace(quote(MASK), MASK)  # the query is percent-encoded


def holds_secret(url: URL) -> bool:
    """Whether ``url`` carries a password (user-info or query) that must not be printed."""
    return url.password is not None or any(names_a_credential(key) for key in url.query)


def sqlite_file_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory / non-SQLite URLs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).expanduser()


def busy_timeout_ms(url: URL, default_ms: int = DEFAULT_TIMEOUTS.lock_wait_ms) -> int:
    """The SQLite busy timeout a URL asks for (``?timeout=`` in seconds), in ms;
    ``default_ms`` (the lock-wait bound) when it asks for none."""
    raw = url.query.get("timeout")
    if raw is None:
        return default_ms
    try:
        seconds = float(raw if isinstance(raw, str) else raw[-1])
    except ValueError:
        raise ValueError(
            f"timeout in a SQLite URL must be a number of seconds, not {raw!r}"
        ) from None
    if not 0 <= seconds <= 86_400:
        raise ValueError(f"timeout in a SQLite URL must be 0 to 86400 seconds, not {raw!r}")
    return int(seconds * 1000)


SYNCHRONOUS_LEVELS = ("FULL", "EXTRA", "NORMAL")


def create_store_engine(
    url: str | URL,
    *,
    foreign_keys: bool = True,
    synchronous: str = "FULL",
    allow_foreign_tables: bool = False,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    **kwargs: Any,
) -> Engine:
    """Create the engine a store or a migration runs on.

    ``kwargs`` go to ``create_engine`` (a store's ``engine_options``) over our
    defaults: on servers ``SERVER_POOL_DEFAULTS`` and the bounds of
    ``timeouts`` as connect arguments (``server_connect_args``); a
    ``connect_args`` given is merged key by key.

    A SQLite file is checked (``check_sqlite_file``) before any connection is
    made. ``foreign_keys=False`` is for migrations, which must not cascade.
    ``synchronous`` is SQLite's: FULL (the default, the reference's
    durability: a commit survives power loss) or NORMAL (in WAL mode a commit
    survives a crash of the process but not of the machine; 3x faster saves).
    ``allow_foreign_tables`` lets ``alembic upgrade`` add our tables to a SQLite
    file that holds another application's. A URL whose driver is missing raises
    ``DriverNotInstalledError`` naming what to install.
    """
    url = parse_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {synchronous!r}"
            )
        return _create_sqlite_engine(
            url,
            foreign_keys=foreign_keys,
            synchronous=level,
            allow_foreign_tables=allow_foreign_tables,
            busy_ms=busy_timeout_ms(url, timeouts.lock_wait_ms),
            **kwargs,
        )
    if backend in ("mysql", "mariadb") and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    # No pool_pre_ping: it costs a round trip per call. A connection the server
    # dropped is invalidated by SQLAlchemy and the store retries (connections.py).
    options: dict[str, Any] = {**SERVER_POOL_DEFAULTS, **kwargs}
    if options.get("poolclass") is not None:  # e.g. NullPool takes no pool sizes
        for key in SERVER_POOL_DEFAULTS:
            if key not in kwargs:
                del options[key]
    connect_args = {**server_connect_args(url, timeouts), **kwargs.get("connect_args", {})}
    engine = _create_engine(url, **{**options, "connect_args": connect_args})
    if "read_timeout" not in kwargs.get("connect_args", {}) and url.get_driver_name() == "pymysql":
        event.listen(engine, "connect", _end_connect_read_timeout)
    return engine


def _end_connect_read_timeout(dbapi_connection: Any, _record: Any) -> None:
    """Lift the read timeout that bounded PyMySQL's login (it reads ``_read_timeout``
    before every read; a bulk call may read longer than a login may take)."""
    dbapi_connection._read_timeout = None


def server_connect_args(url: URL, timeouts: Timeouts) -> dict[str, Any]:
    """The drivers' own bounds for a server URL, none of them a startup ``options=``
    parameter (PgBouncer refuses those): libpq's and PyMySQL's ``connect_timeout``
    (client-side) and, on MySQL/MariaDB, the session's lock waits set by PyMySQL's
    ``init_command`` when it connects (error 1205 after that long)."""
    backend = url.get_backend_name()
    args: dict[str, Any] = {}
    if backend == "postgresql" and url.get_driver_name() == "psycopg":
        args["connect_timeout"] = timeouts.connect_whole_seconds
    elif backend in ("mysql", "mariadb") and url.get_driver_name() == "pymysql":
        wait = timeouts.lock_wait_whole_seconds
        args["connect_timeout"] = timeouts.connect_whole_seconds
        # PyMySQL's connect_timeout covers the TCP connect only: the handshake,
        # login and init_command are reads, bounded by read_timeout, which
        # _end_connect_read_timeout lifts once connected (the watchdog bounds calls).
        args["read_timeout"] = timeouts.connect_whole_seconds
        args["init_command"] = (
            f"SET SESSION innodb_lock_wait_timeout = {wait}, SESSION lock_wait_timeout = {wait}"
        )
    return args


#: pip packages of drivers we do not ship, by SQLAlchemy driver name.
_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "pyodbc": "pyodbc",
    "oracledb": "oracledb",
}
#: The extra that installs the driver we ship for a backend, and its URL scheme.
_OUR_EXTRAS = {
    "postgresql": ("psycopg", "postgres", "postgresql+psycopg://"),
    "mysql": ("pymysql", "mysql", "mysql+pymysql://"),
    "mariadb": ("pymysql", "mysql", "mariadb+pymysql://"),
}


def driver_hint(url: URL) -> str:
    """What to install for ``url``'s driver, as one sentence."""
    backend, driver = url.get_backend_name(), url.get_driver_name()
    ours = _OUR_EXTRAS.get(backend)
    if ours is not None and ours[0] == driver:
        return f"pip install 'uniqc-store[{ours[1]}]'"
    hint = f"pip install {_DRIVER_PACKAGES.get(driver, driver)}"
    if ours is not None:
        hint += f", or use a {ours[2]} URL and pip install 'uniqc-store[{ours[1]}]'"
    return hint


def _create_engine(url: URL, **kwargs: Any) -> Engine:
    """``create_engine``, with a missing driver reported as ``DriverNotInstalledError``
    and an unknown scheme as a bad argument."""
    try:  # looked up at call time: tracing that wraps it later (OpenTelemetry) sees our engines
        engine = sqlalchemy.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise DriverNotInstalledError(
            f"the {url.get_backend_name()} driver {url.get_driver_name()!r} of "
            f"{redact(url)} is not installed ({exc}); install it: {driver_hint(url)}"
        ) from exc
    except NoSuchModuleError:
        engine = None  # refused below, outside the handler: no exception chain to carry the URL
    if engine is not None:
        door.guard(engine)
        return engine
    raise ValueError(
        f"no SQLAlchemy dialect for {url.drivername!r}: use a URL starting with "
        "sqlite://, postgresql+psycopg:// or mysql+pymysql:// (or install the dialect)"
    )


def _create_sqlite_engine(
    url: URL,
    *,
    foreign_keys: bool,
    synchronous: str,
    allow_foreign_tables: bool,
    busy_ms: int,
    **kwargs: Any,
) -> Engine:
    path = sqlite_file_path(url)
    if path is None:
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    else:
        check_sqlite_file(path, allow_foreign_tables=allow_foreign_tables)
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = _create_engine(url, **kwargs)
    install_sqlite_recipe(
        engine,
        foreign_keys=foreign_keys,
        wal=path is not None,
        synchronous=synchronous,
        busy_ms=busy_ms,
    )
    return engine


def _switch_to_wal(cursor: sqlite3.Cursor, timeout_ms: int) -> None:
    """``PRAGMA journal_mode = WAL``, waiting out other connections doing the same.

    The switch takes an exclusive lock without going through the busy
    handler, so processes opening a new file at once would otherwise fail
    with "database is locked"; they retry until the busy timeout instead.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == _SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


#: Engines (by dialect, which an engine shares with its ``execution_options``
#: copies) that already carry the SQLite recipe: it is installed once per engine.
_RECIPE_INSTALLED: WeakKeyDictionary[Any, bool] = WeakKeyDictionary()
#: Marks, in a pooled connection's ``info``, that the recipe's pragmas were applied.
_RECIPE_KEY = "uniqc_store_recipe"


def has_sqlite_recipe(engine: Engine) -> bool:
    """Whether ``install_sqlite_recipe`` already ran on this engine."""
    return _RECIPE_INSTALLED.get(engine.dialect, False)


def install_sqlite_recipe(
    engine: Engine,
    *,
    foreign_keys: bool = True,
    wal: bool = True,
    synchronous: str = "FULL",
    busy_ms: int | None = None,
) -> None:
    """Make pysqlite transactional for DDL too, and set our per-connection pragmas.

    ``isolation_level = None`` stops the driver from managing transactions;
    the ``begin`` hook then emits ``BEGIN`` itself, ``BEGIN IMMEDIATE`` when
    the connection carries the write-intent execution option, so writers
    queue on the busy timeout instead of failing with SQLITE_BUSY mid-way.
    Installed once per engine: a second call (another store on the same
    engine, or an engine from ``create_store_engine``) does nothing, since two
    ``begin`` hooks would send ``BEGIN`` twice.
    """
    if has_sqlite_recipe(engine):
        return
    _RECIPE_INSTALLED[engine.dialect] = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: sqlite3.Connection, record: Any, _proxy: Any) -> None:
        # a connection pooled before the recipe was installed gets it on first use
        if not record.info.get(_RECIPE_KEY):
            _on_connect(dbapi_connection, record)

    timeout_ms = busy_ms if busy_ms is not None else busy_timeout_ms(engine.url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        record.info[_RECIPE_KEY] = True
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            if wal:
                _switch_to_wal(cursor, timeout_ms)
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode is not None:
            conn.exec_driver_sql(f"BEGIN {mode}")
