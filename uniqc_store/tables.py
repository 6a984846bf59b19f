"""Deprecated: the Core tables moved to ``uniqc_store.schema.tables`` (0.2)."""

from __future__ import annotations

import warnings

from uniqc_store.schema.tables import (
    archived_task_shards,
    archived_tasks,
    metadata,
    task_shards,
    tasks,
)

__all__ = ["archived_task_shards", "archived_tasks", "metadata", "task_shards", "tasks"]

warnings.warn(
    "uniqc_store.tables moved to uniqc_store.schema.tables; this alias goes in 1.0",
    DeprecationWarning,
    stacklevel=2,
)
