"""``import uniqc_store`` loads neither Alembic nor the command line's or API's libraries
(issue 15 point 7); they load when a migration or a command needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("alembic", "mako", "click", "rich", "fastapi", "uvicorn")


def loaded_after(code: str, cwd: Path) -> set[str]:
    probe = f"{code}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    )
    return set(out.stdout.split()) & set(HEAVY)


def test_import_is_lean(tmp_path: Path) -> None:
    assert loaded_after("import uniqc_store", tmp_path) == set()


def test_opening_a_store_at_head_stays_lean(tmp_path: Path) -> None:
    from uniqc_store import TaskStore

    TaskStore(tmp_path).close()  # created (and migrated) here, in this process
    code = f"import uniqc_store; uniqc_store.TaskStore({str(tmp_path)!r}).close()"
    assert loaded_after(code, tmp_path) == set()


def test_a_migration_loads_alembic_when_needed(tmp_path: Path) -> None:
    code = f"import uniqc_store; uniqc_store.TaskStore({str(tmp_path / 'new')!r}).close()"
    assert "alembic" in loaded_after(code, tmp_path)
