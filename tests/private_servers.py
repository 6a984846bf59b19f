"""Private PostgreSQL and MariaDB servers for fault tests (SIGSTOP, kill).

The machine's shared servers are never stopped or reconfigured: a test that
freezes a server starts its own, in a temporary directory on a free loopback
port, and removes it afterwards. Each server is started in its own process
group and a reaper kills it if the test process dies first (``kill -9`` of
pytest included), so a frozen server never outlives the run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_SECONDS = 60


@dataclass
class PrivateServer:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGSTOP to the server and every process it forked (PostgreSQL's backends
        each start their own session, so a process group is not enough): it keeps
        its sockets but answers nothing."""
        os.kill(self.process.pid, signal.SIGSTOP)  # first: it forks no new backend
        for pid in _children(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in [*_children(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _children(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reaper(pid: int) -> None:
    """A detached watcher that kills ``pid``'s process group once this process is gone."""
    script = (
        "import os,signal,sys,time\n"
        f"parent,child={os.getpid()},{pid}\n"
        "for _ in range(86400):\n"
        "    try: os.kill(parent,0)\n"
        "    except ProcessLookupError: break\n"
        "    try: os.kill(child,0)\n"
        "    except ProcessLookupError: sys.exit()\n"
        "    time.sleep(1)\n"
        "for sig in (signal.SIGCONT, signal.SIGKILL):\n"
        "    try: os.killpg(child,sig)\n"
        "    except ProcessLookupError: pass\n"
    )
    subprocess.Popen([sys.executable, "-c", script], start_new_session=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the private server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError("the private server did not start in time")


def _finish(process: subprocess.Popen[bytes], directory: str) -> None:
    for pid in _children(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgresql() -> Iterator[PrivateServer]:
    """A PostgreSQL of the machine's version, run as the ``postgres`` user."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    bin_dir = Path(found[-1]).parent
    directory = tempfile.mkdtemp(prefix="uniqc-pg-")
    shutil.chown(directory, "postgres", "postgres")
    data = f"{directory}/data"
    as_postgres = {"user": "postgres", "group": "postgres"} if os.getuid() == 0 else {}
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        **as_postgres,  # type: ignore[call-overload]
    )
    port = _free_port()
    process = subprocess.Popen(  # type: ignore[call-overload]
        [
            str(bin_dir / "postgres"),
            "-D",
            data,
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={directory}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **as_postgres,
    )
    _reaper(process.pid)
    try:
        _wait_for_port(port, process)
        time.sleep(0.5)  # the port opens before the server accepts logins
        yield PrivateServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", process)
    finally:
        _finish(process, directory)


@contextlib.contextmanager
def private_mariadb() -> Iterator[PrivateServer]:
    """A MariaDB of the machine's version, run as root in a temporary data directory."""
    install, server = shutil.which("mariadb-install-db"), shutil.which("mariadbd")
    if install is None or server is None:
        pytest.skip("no MariaDB server binaries (mariadb-install-db) on this machine")
    directory = tempfile.mkdtemp(prefix="uniqc-mariadb-")
    data = f"{directory}/data"
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={directory}/mysqld.sock",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _reaper(process.pid)
    try:
        _wait_for_port(port, process)
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", port=port, user="root")
        try:
            admin.cursor().execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            admin.close()
        yield PrivateServer(f"mysql+pymysql://root@127.0.0.1:{port}/test", process)
    finally:
        _finish(process, directory)
