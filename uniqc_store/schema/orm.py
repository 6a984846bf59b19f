"""The ORM: declarative classes mapped over the Core tables of ``tables.py``.

Payload columns read and write Python values (``JSONText``) under the
attribute names ``result`` and ``task_metadata``; ``to_info`` / ``from_info``
and ``to_shard`` / ``from_shard`` convert rows to and from the repository's
records, checking them as the repository does. Importing this module imports
``sqlalchemy.orm``; the repository runs on the Core tables and imports it only
for ``TaskStore.session()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, relationship
from typing_extensions import Self

from uniqc_store.records import TaskInfo, TaskShard
from uniqc_store.schema import tables
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.values import shard_to_row, task_to_row

__all__ = [
    "ArchivedTaskRow",
    "ArchivedTaskShardRow",
    "Base",
    "TaskRow",
    "TaskShardRow",
    "archived_task_shards",
    "archived_tasks",
    "task_shards",
    "tasks",
]


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata (the tables of ``tables.py``)."""

    metadata = tables.metadata


class _TaskColumns:
    """Attributes shared by ``TaskRow`` and ``ArchivedTaskRow``."""

    if TYPE_CHECKING:  # mapped from each class's __table__
        task_id: Mapped[str]
        backend: Mapped[str]
        status: Mapped[str]
        shots: Mapped[int]
        submit_time: Mapped[str]
        update_time: Mapped[str]
        result: Mapped[Any]
        task_metadata: Mapped[dict[str, Any]]
        error_message: Mapped[str | None]

    def to_info(self) -> TaskInfo:
        """The row as the repository's record."""
        return TaskInfo(
            task_id=self.task_id,
            backend=self.backend,
            status=self.status,
            result=self.result,
            shots=self.shots,
            submit_time=self.submit_time,
            update_time=self.update_time,
            metadata=dict(self.task_metadata or {}),
            error_message=self.error_message,
            archived_at=getattr(self, "archived_at", None),
        )

    @classmethod
    def from_info(cls, info: TaskInfo) -> Self:
        """A new row for ``info``, checked as ``TaskStore.save`` checks it (TypeError /
        ValueError before anything reaches the database); ``update_time`` is kept."""
        row = task_to_row(info, info.update_time)
        values: dict[str, Any] = {
            "task_id": row["task_id"],
            "backend": row["backend"],
            "status": row["status"],
            "shots": row["shots"],
            "submit_time": row["submit_time"],
            "update_time": row["update_time"],
            "result": info.result,
            "task_metadata": dict(info.metadata or {}),
            "error_message": row["error_message"],
        }
        if hasattr(cls, "archived_at"):
            values["archived_at"] = info.archived_at
        return cls(**values)


class _ShardColumns:
    """Attributes shared by ``TaskShardRow`` and ``ArchivedTaskShardRow``."""

    if TYPE_CHECKING:  # mapped from each class's __table__
        uniqc_task_id: Mapped[str]
        shard_index: Mapped[int]
        platform_task_id: Mapped[str]
        backend: Mapped[str]
        circuit_count: Mapped[int]
        sub_index_offset: Mapped[int]
        status: Mapped[str]
        result: Mapped[Any]
        error_message: Mapped[str | None]
        submit_time: Mapped[str]
        update_time: Mapped[str]

    def to_shard(self) -> TaskShard:
        """The row as the repository's record."""
        return TaskShard(
            uniqc_task_id=self.uniqc_task_id,
            shard_index=self.shard_index,
            platform_task_id=self.platform_task_id,
            backend=self.backend,
            circuit_count=self.circuit_count,
            sub_index_offset=self.sub_index_offset,
            status=self.status,
            result=self.result,
            error_message=self.error_message,
            submit_time=self.submit_time,
            update_time=self.update_time,
        )

    @classmethod
    def from_shard(cls, shard: TaskShard, **extra: Any) -> Self:
        """A new row for ``shard``, checked as ``TaskStore.save_shard`` checks it."""
        row = shard_to_row(shard, shard.update_time)
        row["result"] = shard.result
        del row["result_json"]
        return cls(**row, **extra)


class TaskRow(_TaskColumns, Base):
    """A live task (table ``tasks``)."""

    __tablename__ = "tasks"
    __table__ = tasks

    result: Mapped[Any] = column_property(tasks.c.result_json)
    task_metadata: Mapped[dict[str, Any]] = column_property(tasks.c.metadata_json)
    shards: Mapped[list[TaskShardRow]] = relationship(
        back_populates="task",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TaskShardRow.shard_index",
    )


class ArchivedTaskRow(_TaskColumns, Base):
    """An archived task (table ``archived_tasks``)."""

    __tablename__ = "archived_tasks"
    __table__ = archived_tasks

    if TYPE_CHECKING:
        archived_at: Mapped[str]

    result: Mapped[Any] = column_property(archived_tasks.c.result_json)
    task_metadata: Mapped[dict[str, Any]] = column_property(archived_tasks.c.metadata_json)


class TaskShardRow(_ShardColumns, Base):
    """One platform job of a live task (table ``task_shards``)."""

    __tablename__ = "task_shards"
    __table__ = task_shards

    result: Mapped[Any] = column_property(task_shards.c.result_json)
    task: Mapped[TaskRow] = relationship(back_populates="shards", lazy="raise")


class ArchivedTaskShardRow(_ShardColumns, Base):
    """One platform job of an archived task (table ``archived_task_shards``)."""

    __tablename__ = "archived_task_shards"
    __table__ = archived_task_shards

    if TYPE_CHECKING:
        archived_at: Mapped[str]

    result: Mapped[Any] = column_property(archived_task_shards.c.result_json)
