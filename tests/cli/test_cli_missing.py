"""Commands other than ``upgrade`` never create a database (issue 16 point 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from uniqc_store import TaskStore
from uniqc_store.cli.commands import main
from uniqc_store.records import CURRENT_SCHEMA_VERSION

COMMANDS = [
    ("list",),
    ("show", "uqt_1"),
    ("stats",),
    ("export", "-"),
    ("current",),
    ("check",),
    ("downgrade", "0004"),
    ("archive-expired",),
    ("restore", "uqt_1"),
]


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_mistyped_path_creates_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    path = tmp_path / "typo" / "deeper" / "tasks.sqlite"
    code, out = invoke(*args, "--url", f"sqlite:///{path}")
    assert code == 3  # database unavailable
    assert out == (f"error: no task database at {path}; run `uniqc-store upgrade` to create one\n")
    assert list(tmp_path.iterdir()) == []


def test_the_default_location_is_not_created_either(tmp_path: Path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp)}
    env.pop("UNIQC_STORE_URL", None)
    exe = Path(sys.executable).with_name("uniqc-store")
    result = subprocess.run([str(exe), "list"], env=env, capture_output=True, text=True)
    expected = home / ".uniqc" / "cache" / "tasks.sqlite"
    assert result.returncode == 3
    assert result.stderr == (
        f"error: no task database at {expected}; run `uniqc-store upgrade` to create one\n"
    )
    assert list(home.iterdir()) == [] and list(tmp.iterdir()) == []


def test_an_empty_file_is_not_a_task_database(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    path.touch()
    code, out = invoke("list", "--url", f"sqlite:///{path}")
    assert code == 3 and out.startswith(f"error: no task database at {path}")
    assert path.read_bytes() == b"" and list(tmp_path.iterdir()) == [path]


def test_upgrade_creates_and_then_the_others_work(tmp_path: Path) -> None:
    path = tmp_path / "new" / "tasks.sqlite"
    url = f"sqlite:///{path}"
    assert invoke("upgrade", "--sql", "--url", url)[0] == 0
    assert not (tmp_path / "new").exists()
    assert invoke("upgrade", "--url", url)[0] == 0
    assert invoke("list", "--url", url)[0] == 0
    assert invoke("current", "--url", url)[1] == (
        f"{CURRENT_SCHEMA_VERSION:04d} (schema version {CURRENT_SCHEMA_VERSION} of "
        f"{CURRENT_SCHEMA_VERSION}): up to date\n"
    )


def test_the_library_still_creates_its_database_where_pointed(tmp_path: Path) -> None:
    with TaskStore(tmp_path / "a" / "b") as store:
        assert store.schema_version() == CURRENT_SCHEMA_VERSION
    assert (tmp_path / "a" / "b" / "tasks.sqlite").exists()


def test_version_and_python_dash_m() -> None:
    from uniqc_store import __version__

    assert invoke("--version") == (0, f"uniqc-store, version {__version__}\n")
    result = subprocess.run(
        [sys.executable, "-m", "uniqc_store", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == f"uniqc-store, version {__version__}\n"
    assert (
        "0009  v9"
        in subprocess.run(
            [sys.executable, "-m", "uniqc_store", "history"], capture_output=True, text=True
        ).stdout
    )
