"""What the server drivers need: their bounds as connect arguments, pool
defaults, and what to install when a driver is missing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL

from uniqc_store.timeouts import Timeouts

#: Server pools: sized for the API's concurrency (40 requests at once), and a
#: checkout that waits longer than ``pool_timeout`` is ``DatabaseBusyError``.
SERVER_POOL_DEFAULTS: dict[str, Any] = {"pool_size": 10, "max_overflow": 30, "pool_timeout": 5}


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
