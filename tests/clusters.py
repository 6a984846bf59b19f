"""A private PgBouncer and a private three-node MariaDB Galera cluster for the suite.

Both are started for the test session only, on free loopback ports, in temporary
directories removed afterwards; the machine's shared servers are never touched
(PgBouncer pools connections to the shared PostgreSQL, whose configuration stays
as it is). Without the packages (Debian ``pgbouncer``; ``galera-4``,
``mariadb-server``, ``rsync``) the tests that need them skip, saying so; with
``CI=true`` they fail instead (``.ci/run`` installs the packages).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.private_servers import _finish, _free_port, _reaper, _wait_for_port

PGBOUNCER = "/usr/sbin/pgbouncer"
GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
#: The node count and how long a node may take to reach Synced.
GALERA_NODES = 3
SYNC_SECONDS = 120
GALERA_USER, GALERA_PASSWORD = "uniqc", "uniqc-test"


def missing(reason: str) -> None:
    """Skip, or fail under CI (``CI=true``): CI must run what it says it runs."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class PgBouncer:
    """A PgBouncer in transaction mode in front of a PostgreSQL server."""

    port: int

    def url(self, server: URL, database: str) -> URL:
        """``server``'s URL through the pooler, to ``database``, with psycopg's automatic
        prepared statements off (PgBouncer 1.18 cannot carry them in transaction mode)."""
        return server.set(host="127.0.0.1", port=self.port, database=database).update_query_dict(
            {"prepare_threshold": "none"}
        )


@contextlib.contextmanager
def private_pgbouncer(server: URL) -> Iterator[PgBouncer]:
    """PgBouncer (``pool_mode = transaction``) on a free loopback port, pooling every
    database of ``server`` (a wildcard entry), run as the ``postgres`` user (it refuses root)."""
    if not os.access(PGBOUNCER, os.X_OK):
        missing(f"PgBouncer is not installed ({PGBOUNCER}): apt-get install -y pgbouncer")
    directory = tempfile.mkdtemp(prefix="uniqc-pgbouncer-")
    port = _free_port()
    user = server.username or "postgres"
    ini = Path(directory, "pgbouncer.ini")
    ini.write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432} user={user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\n"
        "max_client_conn = 500\ndefault_pool_size = 40\n"
        "server_reset_query =\nignore_startup_parameters = extra_float_digits\n"
        f"logfile = {directory}/pgbouncer.log\n"
    )
    as_postgres = {"user": "postgres", "group": "postgres"} if os.getuid() == 0 else {}
    if as_postgres:
        shutil.chown(directory, "postgres", "postgres")
        shutil.chown(ini, "postgres", "postgres")
    process = subprocess.Popen(  # type: ignore[call-overload]
        [PGBOUNCER, str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **as_postgres,
    )
    _reaper(process.pid)
    try:
        _wait_for_port(port, process)
        yield PgBouncer(port)
    finally:
        _finish(process, directory)


@dataclass
class Galera:
    """A running cluster: one URL per node (without a database)."""

    nodes: list[URL]

    def urls(self, database: str) -> list[URL]:
        return [url.set(database=database) for url in self.nodes]


def _galera_binaries() -> tuple[str, str, str]:
    install, server, client = (
        shutil.which("mariadb-install-db"),
        shutil.which("mariadbd"),
        shutil.which("mariadb"),
    )
    if None in (install, server, client) or not Path(GALERA_PROVIDER).exists():
        missing(
            "a Galera cluster needs mariadb-server and galera-4: "
            "apt-get install -y mariadb-server galera-4 rsync"
        )
    if shutil.which("rsync") is None:
        missing("a Galera cluster needs rsync for its state transfers: apt-get install -y rsync")
    return install, server, client  # type: ignore[return-value]


def _node_config(directory: Path, n: int, ports: list[dict[str, int]]) -> Path:
    node, mine = directory / f"node{n}", ports[n]
    members = ",".join(f"127.0.0.1:{p['gcomm']}" for p in ports)
    cnf = directory / f"node{n}.cnf"
    cnf.write_text(
        "[mysqld]\n"
        f"user=mysql\ndatadir={node}/data\nport={mine['sql']}\nsocket={node}/mysqld.sock\n"
        f"pid-file={node}/mysqld.pid\nlog-error={node}/error.log\n"
        "bind-address=127.0.0.1\nskip-name-resolve\n"
        "innodb_buffer_pool_size=64M\nbinlog_format=ROW\ninnodb_autoinc_lock_mode=2\n"
        "default_storage_engine=InnoDB\nmax_allowed_packet=64M\n"
        f"wsrep_on=ON\nwsrep_provider={GALERA_PROVIDER}\nwsrep_cluster_name=uniqc_test\n"
        f"wsrep_cluster_address=gcomm://{members}\nwsrep_node_name=node{n}\n"
        f"wsrep_node_address=127.0.0.1:{mine['gcomm']}\n"
        f'wsrep_provider_options="base_port={mine["gcomm"]};'
        f"gmcast.listen_addr=tcp://127.0.0.1:{mine['gcomm']};"
        f'ist.recv_addr=127.0.0.1:{mine["ist"]};gcache.size=32M"\n'
        f"wsrep_sst_method=rsync\nwsrep_sst_receive_address=127.0.0.1:{mine['sst']}\n"
        "[client]\n"
        f"socket={node}/mysqld.sock\nuser=root\n"
    )
    return cnf


def _client(client: str, cnf: Path, sql: str) -> str:
    done = subprocess.run(
        [client, f"--defaults-file={cnf}", "-N", "-B", "-e", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _wait_synced(client: str, cnf: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SYNC_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a Galera node exited with {process.returncode}: see {cnf}")
        state = _client(client, cnf, "SHOW STATUS LIKE 'wsrep_local_state_comment'")
        if state.endswith("Synced"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"a Galera node did not reach Synced in {SYNC_SECONDS} s")


@contextlib.contextmanager
def private_galera() -> Iterator[Galera]:
    """Three MariaDB Galera nodes on loopback (node 1 bootstraps, the others join by
    rsync state transfer), with a TCP user for the drivers; killed and removed after."""
    install, server, client = _galera_binaries()
    directory = Path(tempfile.mkdtemp(prefix="uniqc-galera-"))
    ports = [
        {kind: _free_port() for kind in ("sql", "gcomm", "ist", "sst")} for _ in range(GALERA_NODES)
    ]
    configs = [_node_config(directory, n, ports) for n in range(GALERA_NODES)]
    for n in range(GALERA_NODES):
        (directory / f"node{n}" / "data").mkdir(parents=True)
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", "mysql:mysql", str(directory)], check=True)
    subprocess.run(
        [install, f"--defaults-file={configs[0]}", "--auth-root-authentication-method=socket"],
        check=True,
        capture_output=True,
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n, cnf in enumerate(configs):
            extra = ["--wsrep-new-cluster"] if n == 0 else []
            process = subprocess.Popen(
                [server, f"--defaults-file={cnf}", *extra],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            processes.append(process)
            _reaper(process.pid)
            _wait_for_port(ports[n]["sql"], process)
            _wait_synced(client, cnf, process)
        _client(
            client,
            configs[0],
            f"CREATE USER '{GALERA_USER}'@'127.0.0.1' IDENTIFIED BY '{GALERA_PASSWORD}'; "
            f"GRANT ALL ON *.* TO '{GALERA_USER}'@'127.0.0.1'",
        )
        yield Galera(
            [
                URL.create(
                    "mysql+pymysql",
                    username=GALERA_USER,
                    password=GALERA_PASSWORD,
                    host="127.0.0.1",
                    port=p["sql"],
                )
                for p in ports
            ]
        )
    finally:
        for process in reversed(processes):
            _finish(process, str(directory))
        shutil.rmtree(directory, ignore_errors=True)
