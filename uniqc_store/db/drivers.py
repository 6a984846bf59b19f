"""What the server drivers need: their bounds as connect arguments, pool
defaults, and what to install when a driver is missing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL

from uniqc_store.db.dialects import SERVER_BACKENDS, is_mysql
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
    if backend not in SERVER_BACKENDS:
        return args  # an unknown scheme: create_engine says so (asking its driver would raise)
    driver = url.get_driver_name()
    if backend == "postgresql" and driver in ("psycopg", "psycopg_async"):
        args["connect_timeout"] = timeouts.connect_whole_seconds
        args.update(prepare_threshold_of(url))
    elif is_mysql(backend) and driver == "aiomysql":
        # aiomysql's connect_timeout bounds the connect and the login; the watchdog
        # bounds calls (it has no read_timeout)
        wait = timeouts.lock_wait_whole_seconds
        args["connect_timeout"] = timeouts.connect_whole_seconds
        args["init_command"] = (
            f"SET SESSION innodb_lock_wait_timeout = {wait}, SESSION lock_wait_timeout = {wait}"
        )
    elif is_mysql(backend) and driver == "pymysql":
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


def prepare_threshold_of(url: URL) -> dict[str, Any]:
    """psycopg's ``prepare_threshold`` from a URL's ``?prepare_threshold=none`` (or a
    number), as the connect argument psycopg takes (SQLAlchemy would pass the text).

    ``none`` is what PgBouncer before 1.21 in transaction mode needs: psycopg prepares
    a statement it ran 5 times on a connection, and the next transaction, on another
    server connection, does not find it ("prepared statement ... does not exist").
    """
    raw = url.query.get("prepare_threshold")
    if raw is None:
        return {}
    value = raw[-1] if isinstance(raw, tuple) else raw
    if value.strip().lower() in ("none", "null", ""):
        return {"prepare_threshold": None}
    if not value.strip().isdigit():
        raise ValueError(
            f"prepare_threshold in the URL must be none or a whole number, not {value!r}"
        )
    return {"prepare_threshold": int(value)}


#: Galera's ``wsrep_sync_wait`` for every connection of a store: 1 makes a read wait
#: until the node has applied every write the cluster committed before it, so a read
#: on one node sees what a write acknowledged on another one wrote.
GALERA_SYNC_WAIT = 1


def watch_for_galera(engine: Any) -> None:
    """On MySQL/MariaDB engines (pymysql, or aiomysql through ``engine.sync_engine``):
    find out at the first connection whether the server is
    a Galera node (``wsrep_on``); if so, set ``wsrep_sync_wait`` on that connection and
    add it to the ``init_command`` of every later one (no round trip more per connection).

    An ``init_command`` of your own that names ``wsrep_sync_wait`` is left as it is.
    """
    from sqlalchemy import event

    galera = {"on": False}

    def first_connect(dbapi_connection: Any, _record: Any) -> None:
        # No ``with``: aiomysql's connection, as SQLAlchemy adapts it for the async
        # engine's sync side, gives cursors without the context-manager protocol.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
            row = cursor.fetchone()
            galera["on"] = row is not None and str(row[1]).upper() == "ON"
            if galera["on"]:
                cursor.execute(f"SET SESSION wsrep_sync_wait = {GALERA_SYNC_WAIT}")
        finally:
            cursor.close()

    def do_connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        command = str(cparams.get("init_command") or "")
        if not galera["on"] or "wsrep_sync_wait" in command.lower():
            return
        if command.upper().startswith("SET "):
            cparams["init_command"] = f"{command}, SESSION wsrep_sync_wait = {GALERA_SYNC_WAIT}"
        elif not command:
            cparams["init_command"] = f"SET SESSION wsrep_sync_wait = {GALERA_SYNC_WAIT}"

    event.listen(engine, "first_connect", first_connect)
    event.listen(engine, "do_connect", do_connect)


#: pip packages of drivers we do not ship, by SQLAlchemy driver name.
_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "aiomysql": "'uniqc-store[async]'",
    "psycopg_async": "'uniqc-store[postgres,async]'",
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
