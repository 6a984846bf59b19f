"""``TaskPersistence``: the reference's legacy flat-dict API over a TaskStore.

A record is ``{"task_id", "platform", "status", "result", "shots",
"submit_time", "update_time", "error_message", **metadata}``: ``platform``
is the backend and metadata is flattened to the top level. Keyword
arguments ``shots``, ``submit_time`` and ``update_time`` are promoted onto
the task; anything else is metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .records import TERMINAL_STATUSES, TaskInfo, TaskStatus
from .store import TaskStore

_RESERVED = ("shots", "submit_time", "update_time")
_CORE = ("task_id", "platform", "status", "result", "error_message", *_RESERVED)
_OPEN = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


def to_record(info: TaskInfo) -> dict[str, Any]:
    """The flat dict the legacy API returns for a task."""
    record: dict[str, Any] = dict(info.metadata) if isinstance(info.metadata, dict) else {}
    record.update(
        task_id=info.task_id,
        platform=info.backend,
        status=info.status,
        result=info.result,
        shots=info.shots,
        submit_time=info.submit_time,
        update_time=info.update_time,
        error_message=info.error_message,
    )
    return record


class TaskPersistence:
    """Dict-shaped task records, stored in the shared task database."""

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None = None, *, store: TaskStore | None = None
    ) -> None:
        self.store = store if store is not None else TaskStore(cache_dir)
        self.cache_dir: Path | None = self.store.cache_dir
        self.tasks_file: Path | None = self.store.db_path

    def save(
        self, task_id: str, platform: str, status: str, result: Any = None, **metadata: Any
    ) -> None:
        """Save (replace) a record; ``submit_time`` of an existing record is kept."""
        promoted = {k: metadata.pop(k) for k in _RESERVED if k in metadata}
        error_message = metadata.pop("error_message", None)
        info = TaskInfo(
            task_id=task_id,
            backend=platform,
            status=status,
            result=result,
            metadata=metadata,
            error_message=error_message,
            **promoted,
        )
        self.store.save(info)

    def update(self, task_id: str, **fields: Any) -> bool:
        """Change some fields of an existing record (metadata keys merge); False if missing."""
        current = self.load(task_id)
        if current is None:
            return False
        current.update(fields)
        self._save_record(current)
        return True

    def upsert(
        self, task_id: str, platform: str, status: str, result: Any = None, **metadata: Any
    ) -> None:
        """Update the record if it exists (metadata merges), else save a new one."""
        fields = {"platform": platform, "status": status, "result": result, **metadata}
        if not self.update(task_id, **fields):
            self.save(task_id, platform, status, result, **metadata)

    def _save_record(self, record: dict[str, Any]) -> None:
        metadata = {k: v for k, v in record.items() if k not in _CORE}
        core = {k: record[k] for k in (*_RESERVED, "error_message") if k in record}
        self.save(
            record["task_id"],
            record["platform"],
            record["status"],
            record.get("result"),
            **core,
            **metadata,
        )

    def load(self, task_id: str) -> dict[str, Any] | None:
        """The record, or None."""
        info = self.store.get(task_id)
        return to_record(info) if info is not None else None

    def list_all(
        self, platform: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Every record (newest first), optionally of one platform and/or status."""
        return [to_record(i) for i in self.store.list(backend=platform, status=status)]

    def list_by_platform(self, platform: str) -> list[dict[str, Any]]:
        """The records of one platform."""
        return self.list_all(platform=platform)

    def list_pending(self, platform: str | None = None) -> list[dict[str, Any]]:
        """Records still pending or running."""
        return [r for s in _OPEN for r in self.list_all(platform=platform, status=s)]

    def count(self, platform: str | None = None, status: str | None = None) -> int:
        """How many records match."""
        return self.store.count(backend=platform, status=status)

    def clear_completed(self) -> int:
        """Delete the records in a terminal status; return how many."""
        return self.store.clear_completed(TERMINAL_STATUSES)

    def delete(self, task_id: str) -> bool:
        """Delete a record; True if it existed."""
        return self.store.delete(task_id)
