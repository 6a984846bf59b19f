"""The ORM layer: typed payloads, row <-> record conversion, and a Session beside the store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import selectinload

from uniqc_store import StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.schema.orm import ArchivedTaskRow, TaskRow, TaskShardRow, tasks


@pytest.fixture
def filled(store: TaskStore) -> Iterator[TaskStore]:
    for i, backend in enumerate(["a", "a", "b"]):
        task_id = f"uqt_{i}"
        store.save(
            TaskInfo(
                task_id=task_id,
                backend=backend,
                shots=100 * (i + 1),
                result={"counts": {"00": i}},
                metadata={"chip": "é", "n": i},
            )
        )
        store.save_shard(TaskShard(task_id, 0, f"p{i}", backend, status="success"))
        store.save_shard(
            TaskShard(task_id, 1, f"q{i}", backend, status="failed" if i else "success")
        )
    yield store


def test_rows_convert_to_the_records_the_store_returns(filled: TaskStore) -> None:
    filled.archive_task("uqt_2")
    with filled.session() as session:
        row = session.get(TaskRow, "uqt_0")
        assert row is not None
        assert isinstance(row.task_metadata, dict) and row.result == {"counts": {"00": 0}}
        assert row.to_info() == filled.get("uqt_0")
        archived = session.get(ArchivedTaskRow, "uqt_2")
        assert archived is not None and archived.to_info() == filled.get_archived("uqt_2")
        shards = session.scalars(select(TaskShardRow).order_by(TaskShardRow.shard_index)).all()
        assert [s.to_shard() for s in shards if s.uniqc_task_id == "uqt_0"] == filled.get_shards(
            "uqt_0"
        )


def test_readme_queries(filled: TaskStore) -> None:
    """The two queries docs/integration.md shows."""
    with filled.session() as session:
        failing = session.scalars(
            select(TaskRow)
            .where(TaskRow.backend == "a")
            .where(TaskRow.shards.any(TaskShardRow.status == "failed"))
            .options(selectinload(TaskRow.shards))
        ).all()
        assert [t.task_id for t in failing] == ["uqt_1"]
        assert [s.status for s in failing[0].shards] == ["success", "failed"]
        averages = session.execute(
            select(TaskRow.backend, func.avg(TaskRow.shots))
            .group_by(TaskRow.backend)
            .order_by(TaskRow.backend)
        ).all()
        assert [(b, float(avg)) for b, avg in averages] == [("a", 150.0), ("b", 300.0)]


def test_json_type_writes_exactly_the_repository_text(store: TaskStore) -> None:
    """A row written through the models' type holds the bytes the repository writes."""
    value = {"z": [1, 2.5, None], "é": "ü\u2028", "nested": {"k": True}}
    store.save(TaskInfo(task_id="uqt_repo", backend="b", result=value, metadata=value))
    with store.engine.begin() as conn:
        conn.execute(
            insert(tasks),
            {
                "task_id": "uqt_orm",
                "backend": "b",
                "status": "pending",
                "shots": 1,
                "submit_time": "t",
                "update_time": "t",
                "result_json": value,
                "metadata_json": value,
                "error_message": None,
            },
        )
        raw = text("SELECT result_json, metadata_json FROM tasks WHERE task_id = :id")
        ours = conn.execute(raw, {"id": "uqt_orm"}).one()
        repository = conn.execute(raw, {"id": "uqt_repo"}).one()
    assert tuple(ours) == tuple(repository)
    got = store.get("uqt_orm")
    assert got is not None and got.result == value and got.metadata == value


def test_from_info_checks_like_the_repository() -> None:
    with pytest.raises(TypeError, match="task_id must be a string"):
        TaskRow.from_info(TaskInfo(task_id=0, backend="b"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        TaskRow.from_info(TaskInfo(task_id="uqt_1", backend="b", result={"x": object()}))
    with pytest.raises(ValueError, match="expected one of"):
        TaskShardRow.from_shard(TaskShard("uqt_1", 0, "p", "b", status="lost"))
    row = TaskRow.from_info(TaskInfo(task_id="uqt_1", backend="b", metadata={"k": 1}))
    assert row.to_info().metadata == {"k": 1}


def test_session_refuses_writes_and_nothing_is_written(filled: TaskStore) -> None:
    with filled.session() as session:
        session.add(TaskRow.from_info(TaskInfo(task_id="uqt_orm", backend="b")))
        with pytest.raises(StoreError, match="write through the TaskStore"):
            session.commit()
    with filled.session() as session:
        row = session.get(TaskRow, "uqt_0")
        assert row is not None
        row.shots = 5
        with pytest.raises(StoreError):
            session.flush()
    assert filled.get("uqt_orm") is None
    saved = filled.get("uqt_0")
    assert saved is not None and saved.shots == 100


def test_store_writes_while_a_session_is_open_in_memory() -> None:
    """On ``sqlite://`` the store and the Session share one connection."""
    with TaskStore(url="sqlite://") as store:
        store.save(TaskInfo(task_id="uqt_1", backend="b"))
        with store.session() as session:
            assert session.get(TaskRow, "uqt_1") is not None
            store.save(TaskInfo(task_id="uqt_2", backend="b"))
            store.archive_task("uqt_1")
            assert session.scalar(select(func.count()).select_from(TaskRow)) == 1
        assert store.count() == 1 and store.count_archived() == 1


def test_broken_json_reads_as_the_marker_through_the_models(store: TaskStore) -> None:
    store.save(TaskInfo(task_id="uqt_1", backend="b"))
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET result_json = '{not json'"))
    with store.session() as session:
        row = session.get(TaskRow, "uqt_1")
        assert row is not None and row.result == {"_invalid_json": "{not json"}


def test_shards_are_lazy_raise_and_load_with_selectinload(filled: TaskStore) -> None:
    """What docs/integration.md says of ``TaskRow.shards``, and its one-task idiom."""
    with filled.session() as session:
        bare = session.scalars(select(TaskRow).where(TaskRow.task_id == "uqt_1")).one()
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = bare.shards
    with filled.session() as session:
        row = session.get(TaskRow, "uqt_1", options=[selectinload(TaskRow.shards)])
        statuses = [shard.status for shard in row.shards] if row is not None else []
    assert statuses == ["success", "failed"]  # loaded: still readable after the session
    with filled.session() as session:
        shard = session.scalars(
            select(TaskShardRow)
            .where(TaskShardRow.platform_task_id == "q1")
            .options(selectinload(TaskShardRow.task))
        ).one()
        assert shard.task.task_id == "uqt_1"
