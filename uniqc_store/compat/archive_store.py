"""``ArchiveStore``: the reference's archive API, as a facade over a TaskStore."""

from __future__ import annotations

from typing import Any

from uniqc_store.records import TaskInfo, TaskShard, TaskStatus
from uniqc_store.repository.store import TaskStore


class ArchiveStore:
    """Archive operations of a store; ``ArchiveStore()`` opens the default store."""

    def __init__(self, store: TaskStore | None = None) -> None:
        self.store = store if store is not None else TaskStore()

    def archive_task(self, task_id: str) -> bool:
        """Move a live task and its shards into the archive."""
        return self.store.archive_task(task_id)

    def restore_task(self, task_id: str) -> bool:
        """Move an archived task and its shards back to the live tables."""
        return self.store.restore_task(task_id)

    def get_archived(self, task_id: str) -> TaskInfo | None:
        """One archived task, or None."""
        return self.store.get_archived(task_id)

    def get_archived_shards(self, task_id: str) -> list[TaskShard]:
        """An archived task's shards."""
        return self.store.get_archived_shards(task_id)

    def list_archived(
        self,
        *,
        status: str | TaskStatus | None = None,
        backend: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[TaskInfo]:
        """Archived tasks, newest first."""
        return self.store.list_archived(status=status, backend=backend, limit=limit, offset=offset)

    def count_archived(
        self, *, status: str | TaskStatus | None = None, backend: str | None = None
    ) -> int:
        """How many archived tasks match."""
        return self.store.count_archived(status=status, backend=backend)

    def delete_archived(self, task_id: str) -> bool:
        """Delete an archived task for good."""
        return self.store.delete_archived(task_id)

    def archive_expired(self, hours: float = 72, terminal_only: bool = True) -> dict[str, Any]:
        """Archive tasks untouched for ``hours``; see ``TaskStore.archive_expired``."""
        return self.store.archive_expired(hours=hours, terminal_only=terminal_only)
