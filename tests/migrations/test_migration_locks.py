"""Upgrades that do not stall a live database: the migration lock on every way of
deploying (a SQLite file, PostgreSQL direct and behind PgBouncer in transaction
mode, MariaDB, a three-node Galera cluster), its bounded wait naming the holder,
the lease that works where advisory locks don't, and the bounds on every
migration statement (``lock_timeout``/``statement_timeout``, ``lock_wait_timeout``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, Connection, Engine, event, inspect, text
from sqlalchemy.exc import OperationalError

from tests.conftest import scratch_url
from uniqc_store import CURRENT_SCHEMA_VERSION, DatabaseBusyError, TaskStore, Timeouts
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations import lease, locks, lockwait
from uniqc_store.migrations.bounds import ddl_bounds
from uniqc_store.migrations.lease import lease_table
from uniqc_store.migrations.locks import migration_lock
from uniqc_store.migrations.runner import database_version, upgrade
from uniqc_store.schema.versions import MIGRATION_LOCK_TABLE

DEPLOYMENTS = ("sqlite", "postgresql", "mysql", "pgbouncer", "galera")
SERVERS = ("postgresql", "mysql", "pgbouncer", "galera")
#: A short wait for the tests where the lock is held on purpose.
SHORT = Timeouts(migration_lock_seconds=1, ddl_lock_seconds=1)


@pytest.fixture(params=DEPLOYMENTS)
def deploy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """An empty database of each deployment shape."""
    with scratch_url(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture(params=SERVERS)
def server_deploy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url(request.param, tmp_path, request) as url:
        yield url


def engine_for(url: URL) -> Engine:
    return create_store_engine(url, foreign_keys=False, allow_foreign_tables=True)


def version_at(engine: Engine) -> int:
    with engine.connect() as conn:
        return database_version(conn)


def expected_method(url: URL) -> str:
    if url.port is not None and url.username == "uniqc":  # the private Galera cluster
        return "lease"
    return {"sqlite": "flock", "postgresql": "advisory"}.get(url.get_backend_name(), "get_lock")


def test_each_deployment_gets_the_lock_that_works_there(deploy_url: URL) -> None:
    """Galera's nodes say ``wsrep_on``: the lease; PgBouncer is PostgreSQL to us: the
    transaction-scoped advisory lock, which a transaction pooler keeps."""
    engine = engine_for(deploy_url)
    try:
        with engine.connect() as conn:
            assert locks.lock_method(conn) == expected_method(deploy_url)
    finally:
        engine.dispose()


def test_a_second_upgrader_waits_for_the_lock_then_gives_up_naming_the_holder(
    deploy_url: URL,
) -> None:
    """While one upgrader holds the lock, another waits ``migration_lock_seconds`` and
    raises DatabaseBusyError naming it, having changed nothing; once the lock is free
    the same upgrade runs to head."""
    holder, waiter = engine_for(deploy_url), engine_for(deploy_url)
    try:
        with holder.connect() as conn, migration_lock(conn):
            with pytest.raises(DatabaseBusyError) as caught:
                upgrade(waiter, timeouts=SHORT)
            message = str(caught.value)
            assert "held the migration lock" in message and "Nothing was changed" in message
            assert "migration_lock_seconds" in message
            if expected_method(deploy_url) == "get_lock":
                assert "connection " in message  # MySQL tells the holder's connection id
            else:
                assert "uniqc-store upgrade on" in message  # the owner the holder recorded
            assert version_at(waiter) == 0
        upgrade(waiter, timeouts=SHORT)
        assert version_at(waiter) == CURRENT_SCHEMA_VERSION
    finally:
        holder.dispose()
        waiter.dispose()


def test_a_store_opening_honours_its_timeouts_for_the_lock(tmp_path: Path) -> None:
    """``TaskStore(timeouts=...)`` upgrades a SQLite file on open under its own bound."""
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    holder = engine_for(url)
    try:
        with (
            holder.connect() as conn,
            migration_lock(conn),
            pytest.raises(DatabaseBusyError, match="for more than 1 s"),
        ):
            TaskStore(url=url, timeouts=SHORT)
        with TaskStore(url=url, timeouts=SHORT) as store:
            assert store.schema_version() == CURRENT_SCHEMA_VERSION
    finally:
        holder.dispose()


#: One deployer: its own process (Alembic's context is one per process, not per thread).
DEPLOYER = """
import sys
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import upgrade
sys.stdin.readline()  # every deployer is started: go
engine = create_store_engine(sys.argv[1], foreign_keys=False, allow_foreign_tables=True)
upgrade(engine)
engine.dispose()
"""


def test_upgraders_at_once_serialise_and_end_at_head(deploy_url: URL) -> None:
    """Three deployer processes released together (on Galera one per node): each exits
    0, the database is at head, and the lock is gone (the lease row deleted)."""
    from tests.conftest import CLUSTER_NODES

    urls = CLUSTER_NODES.get(deploy_url.render_as_string(hide_password=False), [deploy_url] * 3)
    deployers = [
        subprocess.Popen(
            [sys.executable, "-c", DEPLOYER, u.render_as_string(hide_password=False)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for u in urls
    ]
    for deployer in deployers:
        assert deployer.stdin is not None
        deployer.stdin.write("go\n")
        deployer.stdin.flush()
    outcomes = [d.communicate(timeout=300) for d in deployers]
    failed = [
        f"deployer {n} (on {u.render_as_string()}) exited {d.returncode}:\n{err}"
        for n, (u, d, (_, err)) in enumerate(zip(urls, deployers, outcomes, strict=True), 1)
        if d.returncode != 0
    ]
    if failed:  # the whole stderr (driver errno and text), which an assert message truncates
        pytest.fail("\n".join(failed), pytrace=False)
    engine = engine_for(deploy_url)
    try:
        assert version_at(engine) == CURRENT_SCHEMA_VERSION
        with engine.connect() as conn:
            if inspect(conn).has_table(MIGRATION_LOCK_TABLE):
                assert conn.execute(lease_table.select()).all() == []
    finally:
        engine.dispose()


def test_galera_get_lock_does_not_serialise_nodes_but_the_lease_does(galera_url: URL) -> None:
    """Why Galera needs the lease: GET_LOCK is granted on two nodes at once; the lease
    taken on node 1 makes an upgrade on node 2 wait and name node 1's upgrader."""
    from tests.conftest import CLUSTER_NODES

    one, two = (engine_for(u) for u in CLUSTER_NODES[galera_url.render_as_string(False)][:2])
    try:
        with one.connect() as a, two.connect() as b:
            both = [c.execute(text("SELECT GET_LOCK('uqt_probe', 0)")).scalar() for c in (a, b)]
            assert both == [1, 1]
        with (
            one.connect() as conn,
            migration_lock(conn),
            pytest.raises(DatabaseBusyError, match="uniqc-store upgrade on"),
        ):
            upgrade(two, timeouts=SHORT)
        upgrade(two)
        assert version_at(one) == CURRENT_SCHEMA_VERSION
    finally:
        one.dispose()
        two.dispose()


@pytest.fixture
def galera_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url("galera", tmp_path, request) as url:
        yield url


@pytest.mark.galera
@pytest.mark.parametrize("if_not_exists", [True, False], ids=["as-sent", "without-if-not-exists"])
def test_a_lease_table_another_node_creates_after_our_look_is_no_error(
    galera_url: URL, if_not_exists: bool
) -> None:
    """The race of concurrent deployers, forced: node 2 creates the lease table between
    node 1's look-up (none there) and node 1's CREATE, which Galera then applies after
    node 2's. Ours says IF NOT EXISTS; sent without it (``without-if-not-exists``, as
    the statement was before) it fails with 1050, a lost race, and the next look finds
    the table. Either way the lease is taken and given back on node 1."""
    from tests.conftest import CLUSTER_NODES

    one, two = (engine_for(u) for u in CLUSTER_NODES[galera_url.render_as_string(False)][:2])
    raced: list[str] = []

    def node_two_first(
        _conn: Connection, _cursor: object, statement: str, *rest: object
    ) -> tuple[str, object]:
        if statement.lstrip().startswith("CREATE TABLE") and not raced:
            with two.connect() as other:
                lease_table.create(other)
                other.commit()
            raced.append(statement)
            if not if_not_exists:
                statement = statement.replace("IF NOT EXISTS ", "")
        return statement, rest[0]

    try:
        with one.connect() as conn:
            event.listen(conn, "before_cursor_execute", node_two_first, retval=True)
            with migration_lock(conn, SHORT, method="lease"):
                assert _lease_holder(conn).startswith("uniqc-store upgrade on")
            event.remove(conn, "before_cursor_execute", node_two_first)
            assert len(raced) == 1 and MIGRATION_LOCK_TABLE in raced[0]
            assert _lease_holder(conn) == ""
    finally:
        one.dispose()
        two.dispose()


def _lease_holder(conn: Connection) -> str:
    rows = conn.execute(lease_table.select()).all()
    conn.rollback()
    return rows[0].owner if rows else ""


def test_the_lease_excludes_and_is_taken_over_after_its_deadline(
    server_deploy_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease forced on every server: a second taker waits and names the first; a
    lease whose deadline passed (its holder died) is taken over, with a warning."""
    engine = engine_for(server_deploy_url)
    try:
        with engine.connect() as first, engine.connect() as second:
            with migration_lock(first, SHORT, method="lease"):
                owner = _lease_holder(second)
                assert owner.startswith("uniqc-store upgrade on")
                with (
                    pytest.raises(DatabaseBusyError, match=owner.split(" pid ")[0]),
                    migration_lock(second, SHORT, method="lease"),
                ):
                    pass
            assert _lease_holder(second) == ""  # released: the row is gone
            now = lease.server_now_ms(first)
            first.execute(
                lease_table.insert().values(
                    lock_name=lockwait.LOCK_NAME,
                    owner="a deployer that died",
                    acquired_ms=now - 10_000,
                    expires_ms=now - 1,
                )
            )
            first.commit()
            with (
                caplog.at_level(logging.WARNING, logger=lease.__name__),
                migration_lock(second, SHORT, method="lease"),
            ):
                assert _lease_holder(first).startswith("uniqc-store upgrade on")
            assert "took over the migration lease of a deployer that died" in caplog.text
    finally:
        engine.dispose()


def test_the_filelock_path_for_windows_serialises_sqlite_upgraders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``fcntl`` is missing (Windows) the filelock package takes ``<file>.lock``.
    Forced here on Linux (filelock then uses flock itself); Windows is untested."""
    monkeypatch.setattr(locks, "fcntl", None)
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    holder, waiter = engine_for(url), engine_for(url)
    try:
        with holder.connect() as conn:
            assert locks.lock_method(conn) == "filelock"
            with (
                migration_lock(conn, SHORT),
                pytest.raises(DatabaseBusyError, match="for more than 1 s"),
            ):
                upgrade(waiter, timeouts=SHORT)
        upgrade(waiter, timeouts=SHORT)
        assert version_at(waiter) == CURRENT_SCHEMA_VERSION
        assert Path(f"{tmp_path / 'tasks.sqlite'}.lock").exists()  # kept, as with flock
    finally:
        holder.dispose()
        waiter.dispose()


def _hold_a_read_of_tasks(engine: Engine) -> Connection:
    """A live transaction that read ``tasks`` and is still open (its lock is held)."""
    conn = engine.connect()
    conn.execute(text("SELECT count(*) FROM tasks")).scalar()
    return conn


def test_ddl_behind_a_long_transaction_gives_up_instead_of_stalling(
    server_deploy_url: URL,
) -> None:
    """Revision 0003 adds a column to ``tasks``; a live transaction that read ``tasks``
    holds a lock the ALTER must wait for. With ``ddl_lock_seconds=1`` the upgrade gives
    up after 1 s (DatabaseBusyError naming the bound), the revision is not applied, and
    once the long transaction ends the upgrade completes."""
    engine = engine_for(server_deploy_url)
    try:
        upgrade(engine, "0002")
        live = _hold_a_read_of_tasks(engine)
        if expected_method(server_deploy_url) == "lease":
            _galera_ddl_aborts_the_live_transaction(engine, live)
            return
        try:
            with pytest.raises(DatabaseBusyError, match="ddl_lock_seconds") as caught:
                upgrade(engine, timeouts=SHORT)
            assert "waited more than 1 s for a lock" in str(caught.value)
            assert version_at(engine) == 2
            live.execute(text("SELECT count(*) FROM tasks")).scalar()  # the live one goes on
        finally:
            live.close()
        upgrade(engine, timeouts=SHORT)
        assert version_at(engine) == CURRENT_SCHEMA_VERSION
    finally:
        engine.dispose()


def _galera_ddl_aborts_the_live_transaction(engine: Engine, live: Connection) -> None:
    """Galera runs DDL in total order on every node at once (TOI): it does not wait for
    a local transaction's lock, it aborts that transaction (1213 on its next
    statement, which the store's calls retry)."""
    try:
        upgrade(engine, timeouts=SHORT)
        assert version_at(engine) == CURRENT_SCHEMA_VERSION
        with pytest.raises(OperationalError, match="1213"):
            live.execute(text("SELECT count(*) FROM tasks")).scalar()
    finally:
        live.close()


@pytest.fixture(params=("postgresql", "pgbouncer"))
def postgresql_deploy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url(request.param, tmp_path, request) as url:
        yield url


def test_postgresql_bounds_are_local_to_each_migration_transaction(
    postgresql_deploy_url: URL,
) -> None:
    """``SET LOCAL`` inside the transaction: in effect for its statements, gone after it
    (so a pooler's next client never inherits them), and a statement past
    ``ddl_statement_seconds`` is cancelled as DatabaseBusyError."""
    engine = engine_for(postgresql_deploy_url)
    bounds = Timeouts(ddl_lock_seconds=2, ddl_statement_seconds=3)
    try:
        with engine.connect() as conn:
            with ddl_bounds(conn, bounds):
                for _ in range(3):  # every transaction gets them
                    shown = conn.execute(text("SHOW lock_timeout")).scalar()
                    assert (shown, conn.execute(text("SHOW statement_timeout")).scalar()) == (
                        "2s",
                        "3s",
                    )
                    conn.commit()
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
            conn.rollback()
            with (
                pytest.raises(DatabaseBusyError, match="ran longer than 3 s"),
                ddl_bounds(conn, bounds),
            ):
                conn.execute(text("SELECT pg_sleep(10)"))
    finally:
        engine.dispose()


@pytest.fixture(params=("mysql", "galera"))
def mysql_deploy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    with scratch_url(request.param, tmp_path, request) as url:
        yield url


def test_mysql_bounds_are_restored_on_the_connection(mysql_deploy_url: URL) -> None:
    """MySQL/MariaDB: the migration's session gets ``lock_wait_timeout`` and
    ``innodb_lock_wait_timeout`` of ``ddl_lock_seconds`` and gets the store's back."""
    engine = engine_for(mysql_deploy_url)
    query = text("SELECT @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout")
    try:
        with engine.connect() as conn:
            before = tuple(conn.execute(query).one())
            conn.rollback()
            with ddl_bounds(conn, SHORT):
                assert tuple(conn.execute(query).one()) == (1, 1)
            assert tuple(conn.execute(query).one()) == before == (10, 10)
    finally:
        engine.dispose()
