"""The store behind PgBouncer 1.18 in transaction mode (a private pooler in front of
the shared PostgreSQL; the contract itself runs there as the ``pgbouncer`` variant).

What a transaction pooler changes: consecutive transactions of one client may run on
different server connections, so nothing may live in a server session between
transactions: no ``options=`` startup parameter (PgBouncer refuses it), no session
``SET``, no protocol-level prepared statement (psycopg prepares a statement it ran 5
times; ``?prepare_threshold=none`` in the URL turns that off).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import URL, make_url

from tests.clusters import PgBouncer
from tests.conftest import scratch_on_pgbouncer, server_url
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.drivers import prepare_threshold_of, server_connect_args
from uniqc_store.db.engine import create_store_engine
from uniqc_store.timeouts import DEFAULT_TIMEOUTS


@pytest.fixture
def pooled_database(pgbouncer: PgBouncer) -> Iterator[tuple[PgBouncer, str]]:
    """A new database (so PgBouncer opens a new pool for it, empty)."""
    with scratch_on_pgbouncer(pgbouncer) as url:
        assert url.database is not None
        yield pgbouncer, url.database


def _repeat_then_switch_server_connection(port: int, database: str, threshold: int | None) -> None:
    """A statement run 8 times on one client connection (prepared after 5 with psycopg's
    default), then run again while another client's open transaction holds the only
    server connection it ran on: PgBouncer gives it a new one."""
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname={database}"
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=threshold) as client:
        for i in range(8):
            client.execute("SELECT %s::int + 1", (i,)).fetchone()
        with psycopg.connect(dsn) as other:
            other.execute("SELECT 1")  # its transaction keeps that server connection
            assert client.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)


def test_psycopg_prepared_statements_break_behind_pgbouncer_1_18(
    pooled_database: tuple[PgBouncer, str],
) -> None:
    """Why ``prepare_threshold=none``: with psycopg's default the statement prepared on
    one server connection is missing on the next; with None it runs."""
    bouncer, database = pooled_database
    with pytest.raises(psycopg.errors.InvalidSqlStatementName, match="does not exist"):
        _repeat_then_switch_server_connection(bouncer.port, database, 5)
    _repeat_then_switch_server_connection(bouncer.port, database, None)


def test_the_url_turns_prepared_statements_off_for_every_connection_of_a_store(
    pooled_database: tuple[PgBouncer, str],
) -> None:
    """``?prepare_threshold=none`` reaches psycopg as None (not the text) on every
    connection the store opens, and its calls repeat past the threshold through the
    pooler while other clients hold server connections."""
    bouncer, database = pooled_database
    url = bouncer.url(server_url("postgresql"), database)
    with TaskStore(url=url, auto_migrate=True) as store:
        for i in range(20):
            store.save(TaskInfo(task_id=f"uqt_pool_{i}", backend="b"))
            with psycopg.connect(
                f"host=127.0.0.1 port={bouncer.port} user=postgres dbname={database}"
            ) as other:
                other.execute("SELECT 1")  # holds a server connection meanwhile
                assert store.get(f"uqt_pool_{i}") is not None
        assert store.count() == 20
        with store.reading() as conn:
            assert conn.connection.dbapi_connection.prepare_threshold is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("none", None), ("NULL", None), ("0", 0), ("12", 12)],
)
def test_prepare_threshold_in_the_url_is_parsed(query: str, expected: int | None) -> None:
    url = make_url(f"postgresql+psycopg://u@h/db?prepare_threshold={query}")
    assert prepare_threshold_of(url) == {"prepare_threshold": expected}
    assert server_connect_args(url, DEFAULT_TIMEOUTS)["prepare_threshold"] == expected


def test_a_bad_prepare_threshold_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="prepare_threshold in the URL must be none or a whole"):
        create_store_engine("postgresql+psycopg://u:secret@h/db?prepare_threshold=-3")


def test_no_startup_options_are_sent(pgbouncer: PgBouncer) -> None:
    """Every bound the store sets is a client-side connect argument or a ``SET LOCAL``:
    nothing PgBouncer refuses at startup (``options=``)."""
    url: URL = pgbouncer.url(server_url("postgresql"), "test")
    args = server_connect_args(url, DEFAULT_TIMEOUTS)
    assert "options" not in args and "options" not in url.query
