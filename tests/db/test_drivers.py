"""A URL whose driver is not installed says what to install (issue 16 point 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from uniqc_store import DriverNotInstalledError, StoreError, TaskStore
from uniqc_store.db.drivers import driver_hint

#: Drivers SQLAlchemy knows that are surely not installed here.
ABSENT = [
    (
        "postgresql+pg8000://alice:s3cret@db.example/tasks",
        "pip install pg8000, or use a postgresql+psycopg:// URL and "
        "pip install 'uniqc-store[postgres]'",
    ),
    (
        "mysql+mysqldb://alice:s3cret@db.example/tasks",
        "pip install mysqlclient, or use a mysql+pymysql:// URL and "
        "pip install 'uniqc-store[mysql]'",
    ),
]


@pytest.mark.parametrize(("url", "hint"), ABSENT)
def test_the_library_raises_a_store_error_naming_the_package(url: str, hint: str) -> None:
    with pytest.raises(DriverNotInstalledError) as excinfo:
        TaskStore(url=url)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, StoreError)
    assert message.endswith(f"install it: {hint}") and "\n" not in message
    assert "s3cret" not in message and "alice:***@db.example" in message


@pytest.mark.parametrize(("url", "hint"), ABSENT)
def test_the_command_prints_one_line(tmp_path: Path, url: str, hint: str) -> None:
    exe = Path(sys.executable).with_name("uniqc-store")
    for command in ("list", "upgrade", "current"):
        result = subprocess.run(
            [str(exe), command, "--url", url],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ},
        )
        assert result.returncode == 3  # database unavailable: the driver is missing
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the "), result.stderr
        assert lines[0].endswith(hint) and "s3cret" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_hints_for_the_drivers_we_ship() -> None:
    assert driver_hint(make_url("postgresql+psycopg://h/db")) == (
        "pip install 'uniqc-store[postgres]'"
    )
    assert driver_hint(make_url("mysql+pymysql://h/db")) == "pip install 'uniqc-store[mysql]'"
    # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3, which the extra installs
    default_pg = make_url("postgresql://h/db")
    if default_pg.get_driver_name() == "psycopg":
        assert driver_hint(default_pg) == "pip install 'uniqc-store[postgres]'"
    assert driver_hint(make_url("postgresql+psycopg2://h/db")).startswith(
        "pip install psycopg2-binary, or"
    )
    assert driver_hint(make_url("mysql://h/db")).startswith("pip install mysqlclient, or")
