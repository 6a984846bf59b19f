"""The migrations layer: the Alembic chain run from code, version reading, adoption
of reference files and the check a store makes when it opens.

``runner`` (upgrade, downgrade, the migration lock and the SQLite header
stamps; imports Alembic), ``versions`` (which version a database is at, without
Alembic), ``filters`` (for an application's own ``env.py``). The runner's names
(``uniqc_store.migrations.upgrade`` and the rest) are importable from here and
loaded on first use, so that opening a store never imports Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uniqc_store.migrations.runner import (
        database_version,
        downgrade,
        make_config,
        prepare_database,
        revision_id,
        script_directory,
        sqlite_user_version,
        upgrade,
        upgrade_command,
        version_of,
        version_table,
    )

__all__ = [
    "database_version",
    "downgrade",
    "make_config",
    "prepare_database",
    "revision_id",
    "script_directory",
    "sqlite_user_version",
    "upgrade",
    "upgrade_command",
    "version_of",
    "version_table",
]


def __getattr__(name: str) -> Any:
    """The runner's names (``upgrade``, ``script_location``, ...), imported with Alembic
    on first use; before the package split they were this module's own."""
    if not name.startswith("_"):
        runner = importlib.import_module("uniqc_store.migrations.runner")
        if hasattr(runner, name):
            return getattr(runner, name)
    raise AttributeError(f"module 'uniqc_store.migrations' has no attribute {name!r}")
