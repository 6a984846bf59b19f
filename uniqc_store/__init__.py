"""uniqc-store: the UnifiedQuantum task store on SQLAlchemy and Alembic.

``TaskStore`` is the repository (tasks, shards, archive); ``ArchiveStore``
and ``TaskPersistence`` are the reference's archive and legacy dict APIs.
"""

from __future__ import annotations

from .archive_store import ArchiveStore
from .errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    ForeignDatabaseError,
    MissingParentTaskError,
    PayloadTooLargeError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreError,
    TaskConflictError,
    UnreadableRowError,
)
from .persistence import TaskPersistence
from .records import (
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
from .store import TaskStore
from .timeouts import Timeouts

__version__ = "0.1.0"

__all__ = [
    "APPLICATION_ID",
    "CURRENT_SCHEMA_VERSION",
    "DEFAULT_CACHE_DIR",
    "TERMINAL_STATUSES",
    "UNIQC_TASK_ID_PREFIX",
    "ArchiveStore",
    "DatabaseBusyError",
    "DatabaseUnavailableError",
    "DriverNotInstalledError",
    "ForeignDatabaseError",
    "MissingParentTaskError",
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
