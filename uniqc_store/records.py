"""Plain records the store reads and writes: statuses, tasks, shards and ids.

These are the reference store's value types, kept field-for-field so callers
can switch imports without touching their code.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR: Path = Path.home() / ".uniqc" / "cache"
DB_FILENAME = "tasks.sqlite"

#: The four ASCII bytes ``UNIC`` kept in the SQLite header of our files.
APPLICATION_ID: int = 0x554E4943

#: The schema version of the newest revision; also the newest ``user_version``.
CURRENT_SCHEMA_VERSION: int = 11

TERMINAL_STATUSES: tuple[str, ...] = ("success", "failed", "cancelled")

UNIQC_TASK_ID_PREFIX: str = "uqt_"


def generate_uniqc_task_id() -> str:
    """Return a fresh ``uqt_<32 hex>`` task id (36 characters)."""
    return f"{UNIQC_TASK_ID_PREFIX}{uuid.uuid4().hex}"


def is_uniqc_task_id(task_id: object) -> bool:
    """Whether ``task_id`` is a uniqc-managed id rather than a platform's."""
    return isinstance(task_id, str) and task_id.startswith(UNIQC_TASK_ID_PREFIX)


def utc_now_iso() -> str:
    """The current time as the ISO-8601 text every timestamp column holds."""
    return datetime.now(timezone.utc).isoformat()


class TaskStatus(str, Enum):
    """The statuses a task or shard can be in."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: The stored text of each status.
STATUS_VALUES: frozenset[str] = frozenset(s.value for s in TaskStatus)


def normalize_status(status: object) -> str:
    """Return the stored text of ``status``, refusing anything not in TaskStatus.

    ``str(TaskStatus.RUNNING)`` is ``"TaskStatus.RUNNING"``, so enum members
    are unwrapped through ``.value`` rather than ``str()``.
    """
    value = status.value if isinstance(status, TaskStatus) else status
    if isinstance(value, str) and value in STATUS_VALUES:
        return value
    allowed = ", ".join(s.value for s in TaskStatus)
    if not isinstance(value, str):
        raise TypeError(f"a task status must be a string, one of: {allowed}; not {status!r}")
    raise ValueError(f"unknown task status {status!r}; expected one of: {allowed}")


@dataclass
class TaskInfo:
    """One task: what was submitted where, its state and its result."""

    task_id: str
    backend: str
    status: str = TaskStatus.PENDING
    result: dict[str, Any] | None = None
    shots: int = 1000
    submit_time: str = field(default_factory=utc_now_iso)
    update_time: str = field(default_factory=utc_now_iso)
    metadata: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    archived_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (a deep copy)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskInfo:
        """Build a record from ``to_dict()`` output, old snapshots included."""
        return cls(**{"error_message": None, **data})


@dataclass
class TaskShard:
    """One platform-side job belonging to a uniqc task."""

    uniqc_task_id: str
    shard_index: int
    platform_task_id: str
    backend: str
    circuit_count: int = 1
    sub_index_offset: int = 0
    status: str = TaskStatus.PENDING
    result: Any = None
    error_message: str | None = None
    submit_time: str = field(default_factory=utc_now_iso)
    update_time: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        """The shard as a plain dict (a deep copy)."""
        return asdict(self)


#: The deepest nesting of dicts and lists a payload may have. Python's JSON
#: decoder, FastAPI's encoder and the redaction walk all recurse per level:
#: a much deeper document is saved fine but cannot be read back or served.
MAX_JSON_DEPTH = 100


#: The oldest age in hours the store takes (``archive_expired``, ``expired_task_ids``):
#: 1e6 hours is over a century, so a larger one is a mistake (a timestamp passed as hours).
MAX_HOURS = 1e6


#: Longest id, backend or key timestamp a row may hold: MySQL's key columns are
#: VARCHAR(255); checked on every engine, so a value fits everywhere or nowhere.
MAX_KEY_LENGTH = 255
