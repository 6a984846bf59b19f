"""The built wheel carries the migrations and upgrades a database with no checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_upgrades_without_a_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("uniqc_store-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "uniqc_store/_alembic/env.py",
        "uniqc_store/_alembic/script.py.mako",
        "uniqc_store/_alembic/versions/0001_v1_tasks.py",
        "uniqc_store/_alembic/versions/0005_v5_uqt_ids.py",
        "uniqc_store/py.typed",
        "uniqc_store/dashboard/static/index.html",
        "uniqc_store/dashboard/static/app.js",
    ):
        assert shipped in names
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import uniqc_store, uniqc_store.migrations as m;"
        "from uniqc_store import TaskStore;"
        "print(uniqc_store.__file__); print(m.script_location());"
        "s = TaskStore('db'); print(s.schema_version())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("UNIQC_STORE_URL", None)
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {script}"],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2] == "5"
    assert (elsewhere / "db" / "tasks.sqlite").exists()
