"""``uniqc-store list`` and ``stats`` on a real terminal of 60 to 200 columns (issue 29):
every header shown, ids and backend names whole, dates never cut.

The real console script runs with its standard output on a pseudo-terminal whose
size is set, as a terminal emulator would set it, on a real SQLite file.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from uniqc_store import TaskInfo, TaskStore

EXE = str(Path(sys.executable).with_name("uniqc-store"))
LONG_ID = "uqt_" + "0123456789abcdef" * 5 + "0123456789"  # 94 characters
LONG_BACKEND = "originq:WK_C180_" + "very_long_backend_name_" * 3 + "end"
WIDTHS = (60, 80, 120, 200)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STAMP = re.compile(r"\d{4}-\d\d-\d\d")
CLOCK = re.compile(r"\d\d:\d\d:\d\d")


def on_a_terminal(args: list[str], columns: int) -> list[str]:
    """What a terminal ``columns`` wide shows of the command's output, as lines."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    for name in ("NO_COLOR", "CI", "FORCE_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    shown = b""
    while select.select([primary], [], [], 60)[0]:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=60)
    os.close(primary)
    text = ANSI.sub("", shown.decode("utf-8"))
    assert proc.returncode == 0, text
    return text.replace("\r\n", "\n").splitlines()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("widths") / "tasks.sqlite"
    store = TaskStore(url=f"sqlite:///{path}")
    store.save(TaskInfo(LONG_ID, LONG_BACKEND, "cancelled", shots=123456))
    store.save(TaskInfo("uqt_short", "dummy", "running", shots=10))
    store.close()
    return f"sqlite:///{path}"


def fits(lines: list[str], columns: int, *whole: str) -> None:
    """No line is wider than the terminal, but those holding a value kept whole
    (printed on one line and wrapped by the terminal itself)."""
    for line in lines:
        assert len(line) <= columns or any(value in line for value in whole), (line, lines)


@pytest.mark.parametrize("columns", WIDTHS)
def test_list_shows_every_header_the_whole_id_and_the_date(url: str, columns: int) -> None:
    lines = on_a_terminal([EXE, "list", "--url", url], columns)
    out = "\n".join(lines)
    for header in ("task_id", "backend", "status", "shots", "submitted"):
        assert re.search(rf"(^|\s){header}(\s|$)", out, re.M), (header, out)
    assert LONG_ID in out and "uqt_short" in out  # whole, in one piece: copyable
    for value in ("cancelled", "running", "123456", "10", "dummy"):
        assert re.search(rf"(^|\s){value}(\s|$)", out, re.M), (value, out)
    # the backend may wrap in its column, never lose a character
    assert LONG_BACKEND in out or LONG_BACKEND in column(lines, "backend", "status"), out
    # one date and one time of day per task, each whole
    assert len(STAMP.findall(out)) == 2 and len(CLOCK.findall(out)) == 2, out
    assert "…" not in out
    fits(lines, columns, LONG_ID, LONG_BACKEND)


def column(lines: list[str], header: str, following: str) -> str:
    """A table's column, its cells read top to bottom and joined."""
    start, end = lines[0].index(header), lines[0].index(following)
    return "".join(line[start:end].strip() for line in lines[2:])


def test_list_is_one_table_when_it_fits(url: str) -> None:
    lines = on_a_terminal([EXE, "list", "--url", url], 200)
    assert lines[0].split() == ["task_id", "backend", "status", "shots", "submitted"]
    assert [line.split()[0] for line in lines[2:4]] == ["uqt_short", LONG_ID]


def test_list_of_short_ids_stays_a_table_at_80_columns(tmp_path: Path) -> None:
    """The session in docs/cli.md: 36-character ids, the backend wrapping beside them."""
    store = TaskStore(url=f"sqlite:///{tmp_path / 'tasks.sqlite'}")
    ids = [f"uqt_{n:032x}" for n in range(3)]
    for task_id in ids:
        store.save(TaskInfo(task_id, "originq:WK_C180", "success", shots=1000))
    store.close()
    lines = on_a_terminal([EXE, "list", "--url", f"sqlite:///{tmp_path / 'tasks.sqlite'}"], 80)
    assert lines[0].split() == ["task_id", "backend", "status", "shots", "submitted"]
    assert sum(line.split()[0] in ids for line in lines[2:] if line.strip()) == 3
    fits(lines, 80)


@pytest.mark.parametrize("columns", WIDTHS)
def test_stats_shows_long_backend_names_whole(url: str, columns: int) -> None:
    lines = on_a_terminal([EXE, "stats", "--url", url], columns)
    out = "\n".join(lines)
    for header in ("table", "status", "backend", "tasks"):
        assert re.search(rf"(^|\s){header}(\s|$)", out, re.M), (header, out)
    # the backend's cells, top to bottom (a wrapped name continues on the next line)
    cells = "".join(line.split("│")[3].strip() for line in lines if line.startswith("│"))
    assert LONG_BACKEND in cells or any(line.endswith(LONG_BACKEND) for line in lines), out
    assert "…" not in out and lines[-1].startswith("live: 2  archived: 0")
    fits(lines, columns, LONG_BACKEND, url)
