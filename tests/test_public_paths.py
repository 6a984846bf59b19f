"""The import paths users had before the layer packages keep working (issue 25).

Moved modules keep a re-exporting alias that warns once (``DeprecationWarning``);
the public names (``uniqc_store.models``, ``uniqc_store.api``, ``uniqc_store.cli:main``,
``uniqc_store.migrations.upgrade``) and the released revisions' import path
(``uniqc_store.column_types``) stay without a warning. Each case runs in a fresh
interpreter, since a module warns only when first imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import warnings, sys
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import {old} as old
import {new} as new
for name in {names!r}:
    assert getattr(old, name) is getattr(new, name), name
kinds = [w.category.__name__ for w in caught if "uniqc_store" in str(w.message)]
print(",".join(kinds) or "none")
"""

ALIASES = [
    ("uniqc_store.tables", "uniqc_store.schema.tables", ["tasks", "archived_task_shards"], True),
    ("uniqc_store.engine", "uniqc_store.db.engine", ["create_store_engine"], True),
    ("uniqc_store.engine", "uniqc_store.db.sqlite", ["install_sqlite_recipe"], True),
    ("uniqc_store.engine", "uniqc_store.db.urls", ["sqlite_url_for"], True),
    ("uniqc_store.alembic_filter", "uniqc_store.migrations.filters", ["include_name"], True),
    ("uniqc_store.models", "uniqc_store.schema.orm", ["TaskRow", "TaskShardRow", "Base"], False),
    ("uniqc_store.column_types", "uniqc_store.schema.types", ["KeyText", "PayloadText"], False),
    ("uniqc_store.api", "uniqc_store.api.app", ["create_app", "redact_sensitive"], False),
    ("uniqc_store.cli", "uniqc_store.cli.commands", ["main"], False),
    (
        "uniqc_store.migrations",
        "uniqc_store.migrations.runner",
        ["upgrade", "downgrade", "script_location", "make_config", "migration_lock"],
        False,
    ),
]


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("old", "new", "names", "deprecated"), ALIASES)
def test_an_old_path_gives_the_same_objects(
    old: str, new: str, names: list[str], deprecated: bool
) -> None:
    warned = run(CHECK.format(old=old, new=new, names=names))
    assert warned == ("DeprecationWarning" if deprecated else "none")


def test_opening_a_store_through_the_migrations_package_does_not_import_alembic() -> None:
    """``uniqc_store.migrations`` loads its runner (and Alembic) on first use only."""
    code = (
        "import sys, uniqc_store.migrations.versions, uniqc_store.migrations as m\n"
        "print('alembic' in sys.modules)\n"
        "m.upgrade\n"
        "print('alembic' in sys.modules)\n"
    )
    assert run(code).split() == ["False", "True"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    code = (
        "import uniqc_store.migrations as m, uniqc_store.api as a\n"
        "for mod in (m, a):\n"
        "    try:\n"
        "        mod.nothing_here\n"
        "    except AttributeError as e:\n"
        "        print(type(e).__name__)\n"
    )
    assert run(code).split() == ["AttributeError", "AttributeError"]
