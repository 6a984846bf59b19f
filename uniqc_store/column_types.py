"""The import path of the released revisions: ``0001`` .. ``0005`` import
``KeyText``, ``PayloadText``, ``MYSQL_TABLE_ARGS`` and ``SQLITE_NULLABLE_PK`` from
here, and a released revision is never edited (``docs/adr/0001``), so this
module stays. The types are defined in ``uniqc_store.schema.types``."""

from __future__ import annotations

from uniqc_store.schema.types import MYSQL_TABLE_ARGS, SQLITE_NULLABLE_PK, KeyText, PayloadText

__all__ = ["MYSQL_TABLE_ARGS", "SQLITE_NULLABLE_PK", "KeyText", "PayloadText"]
