"""The declarative schema: the reference's v5 tables, spelled out once.

Every table, column, default, key and index name here is the reference
store's. Engine differences live in the column types (``with_variant``), not
in per-engine SQL: on MySQL/MariaDB key and indexed columns become
``VARCHAR(255)`` with a binary utf8mb4 collation (ids compare exactly, as on
SQLite) and payloads become ``LONGTEXT``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ForeignKey, Index, Integer, MetaData, Table, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from typing_extensions import Self

from .codec import shard_to_row, task_to_row
from .column_types import MYSQL_TABLE_ARGS, SQLITE_NULLABLE_PK, JSONText, KeyText, PayloadText
from .records import TaskInfo, TaskShard


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(
        naming_convention={
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class _TaskColumns:
    """Columns shared by ``tasks`` and ``archived_tasks``, in the reference's order."""

    if TYPE_CHECKING:  # declared by each table (v3 added it last to both)
        error_message: Mapped[str | None]

    task_id: Mapped[str] = mapped_column(KeyText, primary_key=True, info={SQLITE_NULLABLE_PK: True})
    backend: Mapped[str] = mapped_column(KeyText)
    status: Mapped[str] = mapped_column(KeyText)
    shots: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    submit_time: Mapped[str] = mapped_column(KeyText)
    update_time: Mapped[str] = mapped_column(Text)
    result: Mapped[Any] = mapped_column("result_json", JSONText(), nullable=True)
    task_metadata: Mapped[dict[str, Any]] = mapped_column(
        "metadata_json", JSONText(empty_object=True), server_default="{}"
    )

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
    """Columns shared by ``task_shards`` and ``archived_task_shards``."""

    if TYPE_CHECKING:  # declared by each table, with or without its foreign key
        uniqc_task_id: Mapped[str]

    shard_index: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=1)
    platform_task_id: Mapped[str] = mapped_column(KeyText, sort_order=2)
    backend: Mapped[str] = mapped_column(KeyText, sort_order=3)
    circuit_count: Mapped[int] = mapped_column(Integer, server_default=text("1"), sort_order=4)
    sub_index_offset: Mapped[int] = mapped_column(Integer, server_default=text("0"), sort_order=5)
    status: Mapped[str] = mapped_column(KeyText, sort_order=6)
    result: Mapped[Any] = mapped_column("result_json", JSONText(), nullable=True, sort_order=7)
    error_message: Mapped[str | None] = mapped_column(PayloadText, sort_order=8)
    submit_time: Mapped[str] = mapped_column(Text, sort_order=9)
    update_time: Mapped[str] = mapped_column(Text, sort_order=10)

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
    __table_args__ = (
        Index("tasks_backend_idx", "backend"),
        Index("tasks_status_idx", "status"),
        Index("tasks_submit_time_idx", "submit_time"),
        MYSQL_TABLE_ARGS,
    )

    error_message: Mapped[str | None] = mapped_column(PayloadText, sort_order=100)

    shards: Mapped[list[TaskShardRow]] = relationship(
        back_populates="task",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TaskShardRow.shard_index",
    )


class ArchivedTaskRow(_TaskColumns, Base):
    """An archived task (table ``archived_tasks``); v3 added ``error_message`` last."""

    __tablename__ = "archived_tasks"
    __table_args__ = (
        Index("archived_backend_idx", "backend"),
        Index("archived_status_idx", "status"),
        Index("archived_submit_time_idx", "submit_time"),
        MYSQL_TABLE_ARGS,
    )

    archived_at: Mapped[str] = mapped_column(Text, sort_order=100)
    error_message: Mapped[str | None] = mapped_column(PayloadText, sort_order=101)


class TaskShardRow(_ShardColumns, Base):
    """One platform job of a live task (table ``task_shards``)."""

    __tablename__ = "task_shards"
    __table_args__ = (
        Index("task_shards_platform_idx", "platform_task_id"),
        Index("task_shards_status_idx", "status"),
        MYSQL_TABLE_ARGS,
    )

    uniqc_task_id: Mapped[str] = mapped_column(
        KeyText,
        ForeignKey("tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
        sort_order=0,
    )

    task: Mapped[TaskRow] = relationship(back_populates="shards", lazy="raise")


class ArchivedTaskShardRow(_ShardColumns, Base):
    """One platform job of an archived task (table ``archived_task_shards``)."""

    __tablename__ = "archived_task_shards"
    __table_args__ = (
        Index("archived_task_shards_platform_idx", "platform_task_id"),
        MYSQL_TABLE_ARGS,
    )

    uniqc_task_id: Mapped[str] = mapped_column(KeyText, primary_key=True, sort_order=0)
    archived_at: Mapped[str] = mapped_column(Text, sort_order=11)


tasks = cast(Table, TaskRow.__table__)
archived_tasks = cast(Table, ArchivedTaskRow.__table__)
task_shards = cast(Table, TaskShardRow.__table__)
archived_task_shards = cast(Table, ArchivedTaskShardRow.__table__)
