"""Deprecated: the Alembic filters moved to ``uniqc_store.migrations.filters`` (0.2)."""

from __future__ import annotations

import warnings

from uniqc_store.migrations.filters import include_name, include_object, our_tables

__all__ = ["include_name", "include_object", "our_tables"]

warnings.warn(
    "uniqc_store.alembic_filter moved to uniqc_store.migrations.filters; this alias goes in 1.0",
    DeprecationWarning,
    stacklevel=2,
)
