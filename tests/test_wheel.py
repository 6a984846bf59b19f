"""The built wheel carries the migrations and upgrades a database with no checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, scratch_url
from uniqc_store.records import CURRENT_SCHEMA_VERSION

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
        "uniqc_store/_alembic/versions/0006_exact_keys.py",
        "uniqc_store/py.typed",
        "uniqc_store/api/dashboard/static/index.html",
        "uniqc_store/api/dashboard/static/app.js",
    ):
        assert shipped in names
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names} == {"uniqc_store", dist_info}  # no benchmarks
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "Project-URL: Changelog, https://" in metadata and "License-Expression: MIT" in metadata
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
    assert out[2] == str(CURRENT_SCHEMA_VERSION)
    assert (elsewhere / "db" / "tasks.sqlite").exists()


def readme_deploy_block() -> str:
    """The first shell block of the README's "Deploying from an installed package"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Deploying from an installed package\n", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture(scope="module")
def deploy_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel (and its dependencies, from pip's cache)."""
    where = tmp_path_factory.mktemp("deploy")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = where.glob("uniqc_store-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[postgres,mysql]"],
        check=True,
        capture_output=True,
    )
    return venv


def in_venv(venv: Path, cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(cwd.parent),
        "UNIQC_STORE_URL": url,
        "VIRTUAL_ENV": str(venv),
    }
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_readme_deploys_from_an_installed_package(
    deploy_venv: Path, tmp_path: Path, backend: str
) -> None:
    block = readme_deploy_block()
    assert block.strip().splitlines()[-1] == "alembic upgrade head"
    empty = tmp_path / "deploy"
    empty.mkdir()
    with scratch_url(backend, tmp_path) as scratch:
        url = scratch.render_as_string(hide_password=False)

        def alembic(*args: str) -> str:
            result = in_venv(deploy_venv, empty, url, "alembic", *args)
            assert result.returncode == 0, (args, result.stderr)
            return result.stdout

        done = in_venv(deploy_venv, empty, url, "bash", "-e", "-c", block)
        assert done.returncode == 0, done.stderr
        where = in_venv(
            deploy_venv, empty, url, "python", "-c", "import uniqc_store as u; print(u.__file__)"
        )
        assert where.stdout.startswith(str(deploy_venv))
        assert alembic("current").strip() == "0011 (head)"
        assert "0010 -> 0011 (head), v11" in alembic("history")
        alembic("check")
        alembic("downgrade", "-7")
        assert alembic("current").strip() == "0004"
        sql = alembic("upgrade", "head", "--sql")
        assert "CREATE TABLE IF NOT EXISTS tasks (" in sql and "SET version_num='0011'" in sql
        alembic("upgrade", "head")
        assert alembic("current").strip() == "0011 (head)"
