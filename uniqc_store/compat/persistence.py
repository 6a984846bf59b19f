"""``TaskPersistence``: the reference's legacy flat-dict API over a TaskStore.

A record is built as the reference builds it, key for key and in its order:
``task_id``, ``platform`` (the backend), ``status``, ``result``,
``submit_time``, ``update_time``; then ``shots`` only when it is not 0, and
last the metadata keys in the order they were given (a metadata key never
overrides one of those). The reference shows nothing else; a task whose
``error_message`` was set through ``TaskStore`` (no such metadata key) also
shows it, after ``shots``.

Keyword arguments ``shots``, ``submit_time`` and ``update_time`` are
promoted onto the task (``update_time`` is always the time of the write, as
in the reference); anything else is metadata, ``error_message`` included, so
it keeps its place and the reference store reading the same database sees it
too. An ``error_message`` string is also copied to the task's
``error_message`` column (so the REST API and the dashboard show it); any
other value (None, a dict) clears the column. So ``save(**load(x))`` and
``update(**load(x))`` give back the same record.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from uniqc_store.records import TERMINAL_STATUSES, TaskInfo, TaskStatus
from uniqc_store.repository.store import TaskStore

_RESERVED = frozenset({"shots", "submit_time", "update_time"})
_ERROR = "error_message"
_OPEN = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


def to_record(info: TaskInfo) -> dict[str, Any]:
    """The flat dict the legacy API returns for a task (the reference's shape)."""
    record: dict[str, Any] = {
        "task_id": info.task_id,
        "platform": info.backend,
        "status": info.status,
        "result": info.result,
        "submit_time": info.submit_time,
        "update_time": info.update_time,
    }
    if info.shots:
        record["shots"] = info.shots
    metadata = info.metadata if isinstance(info.metadata, dict) else {}  # another tool's
    if info.error_message is not None and _ERROR not in metadata:  # set through the store
        record[_ERROR] = info.error_message
    for key, value in metadata.items():
        record.setdefault(key, value)
    return record


def _split(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reserved keywords, everything else), as the reference splits them."""
    reserved = {k: v for k, v in fields.items() if k in _RESERVED}
    return reserved, {k: v for k, v in fields.items() if k not in _RESERVED}


def _mirror_error(info: TaskInfo, extra: dict[str, Any]) -> None:
    """Copy an ``error_message`` keyword's text to the task's column (None for any
    other value); the keyword itself stays metadata, where it was given."""
    if _ERROR in extra:
        value = extra[_ERROR]
        info.error_message = value if isinstance(value, str) else None


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
        """Save (replace) a record; ``submit_time`` of an existing record is kept.

        ``shots`` defaults to 0 (the record then has no ``shots`` key), as in the reference.
        """
        reserved, extra = _split(metadata)
        info = TaskInfo(
            task_id=task_id,
            backend=platform,
            status=status,
            result=result,
            shots=int(reserved.get("shots", 0)),
            submit_time=reserved.get("submit_time") or datetime.now(timezone.utc).isoformat(),
            metadata=extra,
        )
        _mirror_error(info, extra)
        self.store.save(info)

    def update(self, task_id: str, **fields: Any) -> bool:
        """Change some fields of an existing record; False if there is none.

        ``platform``, ``status`` and ``result`` replace the task's; ``shots`` too;
        ``update_time`` is the time of this write and ``submit_time`` is kept (as
        the reference's store keeps it); every other key is merged into the
        metadata (the rest of it is kept). Read, merge and write are one atomic
        step (``TaskStore.modify``): concurrent updates of one record all land,
        and a record deleted or archived meanwhile is not written back.
        """
        reserved, extra = _split(fields)

        def apply(info: TaskInfo) -> None:
            changes = dict(extra)
            if "platform" in changes:
                info.backend = changes.pop("platform")
            if "status" in changes:
                info.status = changes.pop("status")
            if "result" in changes:
                info.result = changes.pop("result")
            if "shots" in reserved:
                info.shots = int(reserved["shots"])
            if not isinstance(info.metadata, dict):
                info.metadata = {}
            _mirror_error(info, changes)
            info.metadata = {**info.metadata, **changes}

        return self.store.modify(task_id, apply) is not None

    def upsert(
        self, task_id: str, platform: str, status: str, result: Any = None, **metadata: Any
    ) -> None:
        """Update the record if it exists, else save a new one.

        As in the reference, an existing record keeps its ``platform`` (pass
        ``platform=`` to ``update`` to change it); ``status``, ``result`` and the
        keywords are applied as ``update`` applies them.
        """
        if not self.update(task_id, status=status, result=result, **metadata):
            self.save(task_id, platform, status, result, **metadata)

    def load(self, task_id: str) -> dict[str, Any] | None:
        """The record, or None."""
        info = self.store.get(task_id)
        return to_record(info) if info is not None else None

    def list_all(
        self, platform: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Records newest first, optionally of one platform and/or status, at most ``limit``."""
        found = self.store.list(backend=platform, status=status, limit=limit)
        return [to_record(i) for i in found]

    def list_by_platform(self, platform: str) -> list[dict[str, Any]]:
        """The records of one platform."""
        return self.list_all(platform=platform)

    def list_pending(self, platform: str | None = None) -> list[dict[str, Any]]:
        """Records still pending or running (pending ones first)."""
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
