"""The engine a store or a migration runs on: our defaults over
``create_engine``, the SQLite file checked before anything connects, and every
engine guarded by the one door (``door.py``).
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy
from sqlalchemy import URL, Engine, event
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import StaticPool

from uniqc_store.db import door
from uniqc_store.db.dialects import is_mysql
from uniqc_store.db.drivers import (
    SERVER_POOL_DEFAULTS,
    _end_connect_read_timeout,
    driver_hint,
    server_connect_args,
    watch_for_galera,
)
from uniqc_store.db.sqlite import SYNCHRONOUS_LEVELS, busy_timeout_ms, install_sqlite_recipe
from uniqc_store.db.sqlite_files import check_sqlite_file
from uniqc_store.db.urls import parse_url, redact, resolve_url, sqlite_file_path
from uniqc_store.errors import DriverNotInstalledError
from uniqc_store.timeouts import DEFAULT_TIMEOUTS, Timeouts


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
    refuse_async_url(url)
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
    url, options = server_engine_options(url, timeouts, kwargs)
    engine = _create_engine(url, **options)
    if "read_timeout" not in kwargs.get("connect_args", {}) and url.get_driver_name() == "pymysql":
        event.listen(engine, "connect", _end_connect_read_timeout)
    if is_mysql(backend) and url.get_driver_name() == "pymysql":
        watch_for_galera(engine)
    return engine


def server_engine_options(
    url: URL, timeouts: Timeouts, kwargs: dict[str, Any]
) -> tuple[URL, dict[str, Any]]:
    """A server URL (utf8mb4 on MySQL) and the ``create_engine`` options a store uses
    on it: ``SERVER_POOL_DEFAULTS`` under ``kwargs``, the bounds of ``timeouts`` as
    connect arguments under a given ``connect_args`` (sync and async engines alike)."""
    if is_mysql(url.get_backend_name()) and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    # No pool_pre_ping: it costs a round trip per call. A connection the server
    # dropped is invalidated by SQLAlchemy and the store retries (connections.py).
    options: dict[str, Any] = {**SERVER_POOL_DEFAULTS, **kwargs}
    if options.get("poolclass") is not None:  # e.g. NullPool takes no pool sizes
        for key in SERVER_POOL_DEFAULTS:
            if key not in kwargs:
                del options[key]
    connect_args = {**server_connect_args(url, timeouts), **kwargs.get("connect_args", {})}
    return url, {**options, "connect_args": connect_args}


#: Set on the dialect of an async engine's ``sync_engine`` that the async store drives
#: (``async_bridge``): its statements run under SQLAlchemy's greenlet bridge.
BRIDGED_KEY = "_uniqc_store_async_bridge"
#: The sync driver a ``TaskStore`` URL takes instead of an async one.
SYNC_DRIVER = {
    "psycopg_async": "psycopg",
    "asyncpg": "psycopg",
    "aiomysql": "pymysql",
    "asyncmy": "pymysql",
    "aiosqlite": "pysqlite",
}


def is_async_url(url: URL) -> bool:
    """Whether ``url`` names an asyncio driver (its dialect says so; no driver is imported)."""
    try:
        return bool(url.get_dialect().is_async)
    except NoSuchModuleError:
        return False  # refused later with the list of schemes


def refuse_async_url(url: URL) -> None:
    """``TaskStore`` and the tools are sync: an asyncio driver's URL is refused at once."""
    if is_async_url(url):
        sync = url.set(
            drivername=f"{url.get_backend_name()}+"
            f"{SYNC_DRIVER.get(url.get_driver_name(), '<sync driver>')}"
        )
        raise ValueError(
            f"{url.drivername}:// is an asyncio driver: open it with uniqc_store.AsyncTaskStore, "
            f"or give TaskStore a {sync.drivername}:// URL"
        )


def refuse_async_engine(engine: Any) -> None:
    """``TaskStore(engine=...)`` takes a sync ``Engine``: an ``AsyncEngine`` (or the
    ``sync_engine`` of one the async store does not drive) is refused at once."""
    if hasattr(engine, "sync_engine"):
        raise TypeError(
            "engine is an AsyncEngine: open it with uniqc_store.AsyncTaskStore(engine=...); "
            "TaskStore takes a sqlalchemy.create_engine() engine"
        )
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be a sqlalchemy Engine, not {type(engine).__name__}")
    if engine.dialect.is_async and not getattr(engine.dialect, BRIDGED_KEY, False):
        raise TypeError(
            f"engine runs the asyncio driver {engine.url.drivername}: open its AsyncEngine "
            "with uniqc_store.AsyncTaskStore(engine=...)"
        )


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


def store_engine(
    url: str | URL | None,
    cache_dir: str | os.PathLike[str] | None,
    engine: Engine | None,
    *,
    synchronous: str,
    timeouts: Timeouts,
    options: dict[str, Any] | None,
) -> tuple[URL, Engine, bool]:
    """The URL, the engine and whether the store owns it, for ``TaskStore(...)``.

    A given ``engine`` is the caller's (its options too); a SQLite one still gets
    the recipe, after its file is checked and before anything connects, so a
    foreign file stays as it is. Otherwise the engine is made from ``url`` >
    ``cache_dir`` > ``$UNIQC_STORE_URL`` > the default file.
    """
    if engine is None:
        resolved = resolve_url(url, cache_dir)
        refuse_async_url(resolved)
        made = create_store_engine(
            resolved, synchronous=synchronous, timeouts=timeouts, **(options or {})
        )
        return resolved, made, True
    refuse_async_engine(engine)
    if engine.dialect.name == "sqlite":
        path = sqlite_file_path(engine.url)
        if path is not None:
            check_sqlite_file(path)
        busy_ms = busy_timeout_ms(engine.url, timeouts.lock_wait_ms)
        install_sqlite_recipe(engine, wal=path is not None, busy_ms=busy_ms)
    return engine.url, engine, False
