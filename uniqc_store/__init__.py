"""uniqc-store: the UnifiedQuantum task store on SQLAlchemy and Alembic.

``TaskStore`` is the repository (tasks, shards, archive); ``ArchiveStore``
and ``TaskPersistence`` are the reference's archive and legacy dict APIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uniqc_store.compat.archive_store import ArchiveStore
from uniqc_store.compat.persistence import TaskPersistence
from uniqc_store.errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    ForeignDatabaseError,
    MissingParentTaskError,
    PartialRunError,
    PayloadTooLargeError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreError,
    TaskConflictError,
    UnreadableRowError,
)
from uniqc_store.records import (
    APPLICATION_ID,
    CURRENT_SCHEMA_VERSION,
    DEFAULT_CACHE_DIR,
    TERMINAL_STATUSES,
    UNIQC_TASK_ID_PREFIX,
    TaskInfo,
    TaskShard,
    TaskStatus,
    generate_uniqc_task_id,
    is_uniqc_task_id,
)
from uniqc_store.repository.store import TaskStore
from uniqc_store.timeouts import Timeouts

if TYPE_CHECKING:
    from uniqc_store.repository.async_store import AsyncTaskStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``AsyncTaskStore`` is imported on first use: it loads SQLAlchemy's asyncio
    extension (and greenlet), which a sync program never needs."""
    if name == "AsyncTaskStore":
        from uniqc_store.repository.async_store import AsyncTaskStore

        return AsyncTaskStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APPLICATION_ID",
    "CURRENT_SCHEMA_VERSION",
    "DEFAULT_CACHE_DIR",
    "TERMINAL_STATUSES",
    "UNIQC_TASK_ID_PREFIX",
    "ArchiveStore",
    "AsyncTaskStore",
    "DatabaseBusyError",
    "DatabaseUnavailableError",
    "DriverNotInstalledError",
    "ForeignDatabaseError",
    "MissingParentTaskError",
    "PartialRunError",
    "PayloadTooLargeError",
    "SchemaOutOfDateError",
    "SchemaTooNewError",
    "StoreError",
    "TaskConflictError",
    "TaskInfo",
    "TaskPersistence",
    "TaskShard",
    "TaskStatus",
    "TaskStore",
    "Timeouts",
    "UnreadableRowError",
    "generate_uniqc_task_id",
    "is_uniqc_task_id",
]
