"""Deprecated: the engine helpers moved to ``uniqc_store.db`` (0.2).

``create_store_engine`` is in ``uniqc_store.db.engine``, ``install_sqlite_recipe``
in ``uniqc_store.db.sqlite`` and ``sqlite_url_for`` in ``uniqc_store.db.urls``.
"""

from __future__ import annotations

import warnings

from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.sqlite import install_sqlite_recipe
from uniqc_store.db.urls import sqlite_url_for

__all__ = ["create_store_engine", "install_sqlite_recipe", "sqlite_url_for"]

warnings.warn(
    "uniqc_store.engine moved to uniqc_store.db (engine, sqlite, urls); this alias goes in 1.0",
    DeprecationWarning,
    stacklevel=2,
)
