"""The Alembic chain on SQLite: fidelity to the reference, header stamps,
atomic revisions, adoption of reference files and refusal of foreign ones."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import URL
from sqlalchemy.exc import IntegrityError

from tests import reference_db as ref
from tests.alembic_runner import run_alembic
from tests.migrations.test_revision_0007 import NEW_INDEXES, REPLACED
from uniqc_store import (
    APPLICATION_ID,
    CURRENT_SCHEMA_VERSION,
    ForeignDatabaseError,
    SchemaTooNewError,
    TaskInfo,
    TaskStore,
)
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import make_config, script_directory, upgrade


def sqlite_url(path: Path) -> URL:
    return URL.create("sqlite+pysqlite", database=str(path))


def migrate(path: Path, revision: str = "head", *, down: bool = False) -> None:
    engine = create_store_engine(sqlite_url(path), foreign_keys=False)
    try:
        with engine.connect() as conn:
            config = make_config(connection=conn)
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def header(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA application_id").fetchone()[0],
        )
    finally:
        conn.close()


def alembic_revision(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT version_num FROM uniqc_store_alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return row[0] if row else None


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, sorted, for before/after comparisons."""
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    data = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    conn.close()
    return data


def test_revision_ids_are_schema_versions() -> None:
    script = script_directory()
    assert script.get_heads() == [f"{CURRENT_SCHEMA_VERSION:04d}"]
    chain = [r.revision for r in script.walk_revisions("base", "heads")]
    assert chain == [
        "0011",
        "0010",
        "0009",
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]


def without_0007_indexes(facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` as the reference's: 0007's and 0010's indexes taken out (after checking
    they are there as made) and the ones 0007 replaced put back."""
    made = facts["tasks"]["indexes"].pop("tasks_update_time_idx")
    assert made == (0, "c", 0, ["update_time", "task_id"])
    for table, indexes in NEW_INDEXES.items():
        for name, columns in indexes.items():
            assert facts[table]["indexes"].pop(name) == (0, "c", 0, columns)
        for name, columns in REPLACED[table].items():
            assert name not in facts[table]["indexes"]
            facts[table]["indexes"][name] = (0, "c", 0, columns)
    return facts


def test_head_schema_matches_reference_ddl(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.sqlite", tmp_path / "ref.sqlite"
    migrate(ours)
    ref.build_reference_file(theirs, 5)
    assert without_0007_indexes(ref.schema_facts(ours)) == ref.schema_facts(theirs)


def test_models_create_the_reference_schema(tmp_path: Path) -> None:
    from uniqc_store.schema.orm import Base

    ours, theirs = tmp_path / "models.sqlite", tmp_path / "ref.sqlite"
    engine = create_store_engine(sqlite_url(ours))
    Base.metadata.create_all(engine)
    engine.dispose()
    ref.build_reference_file(theirs, 5)
    assert without_0007_indexes(ref.schema_facts(ours)) == ref.schema_facts(theirs)


@pytest.mark.parametrize("version", range(1, 6))
def test_each_revision_matches_reference_version(tmp_path: Path, version: int) -> None:
    ours, theirs = tmp_path / "ours.sqlite", tmp_path / "ref.sqlite"
    migrate(ours, f"{version:04d}")
    ref.build_reference_file(theirs, version)
    our_facts, their_facts = ref.schema_facts(ours), ref.schema_facts(theirs)
    for table, facts in their_facts.items():
        assert our_facts[table] == facts, table
    assert header(ours) == (version, APPLICATION_ID)
    assert alembic_revision(ours) == f"{version:04d}"


def test_downgrade_steps_restamp_user_version(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    migrate(path)
    assert header(path)[0] == CURRENT_SCHEMA_VERSION
    for version in (6, 5, 4, 3, 2, 1, 0):
        migrate(path, f"{version:04d}" if version else "base", down=True)
        assert header(path)[0] == version
    assert set(dump(path)) == {"uniqc_store_alembic_version"}


def test_failing_data_revision_leaves_previous_revision(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    ref.build_reference_file(path, 4)
    rows = ref.legacy_rows(4500)  # more than two v5 batches
    ref.insert_rows(path, "tasks", rows)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER fail_v5 BEFORE INSERT ON task_shards "
        "WHEN NEW.platform_task_id = 'plat-004400' BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    conn.commit()
    conn.close()
    before = dump(path)
    with pytest.raises(IntegrityError, match="boom"):  # the trigger's RAISE(ABORT)
        migrate(path)
    assert dump(path) == {**before, "uniqc_store_alembic_version": [("0004",)]}
    assert header(path) == (4, APPLICATION_ID)


def test_failing_ddl_revision_leaves_previous_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.sqlite"
    migrate(path, "0003")
    before = dump(path)
    ref.fail_v4_midway(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        migrate(path)
    assert dump(path) == before
    assert alembic_revision(path) == "0003"
    assert header(path) == (3, APPLICATION_ID)


@pytest.mark.parametrize("version", range(1, 6))
def test_reference_file_is_adopted(tmp_path: Path, version: int) -> None:
    path = tmp_path / "tasks.sqlite"
    ref.build_reference_file(path, version)
    rows = ref.legacy_rows(30)
    ref.insert_rows(path, "tasks", rows)
    archived = [
        {**r, "archived_at": "2024-02-01T00:00:00+00:00"} for r in ref.legacy_rows(7, prefix="old-")
    ]
    if version >= 2:
        ref.insert_rows(path, "archived_tasks", archived)
    if version < 3:  # no error_message column before v3
        for row in rows + archived:
            row["error_message"] = None
    already = {**ref.legacy_rows(1)[0], "task_id": "uqt_" + "0" * 32, "metadata_json": '{"k": 1}'}
    ref.insert_rows(path, "tasks", [already])

    result = run_alembic("-x", f"url=sqlite:///{path}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert header(path) == (CURRENT_SCHEMA_VERSION, APPLICATION_ID)
    assert alembic_revision(path) == f"{CURRENT_SCHEMA_VERSION:04d}"

    store = TaskStore(url=sqlite_url(path))
    assert store.get(already["task_id"]).metadata == {"k": 1}
    if version == 5:  # v5 already ran: rows written since are the user's, left alone
        assert {t.task_id for t in store.list()} == {r["task_id"] for r in [*rows, already]}
        assert store.count_archived() == len(archived)
    else:
        check_rekeyed(store, rows, archived=False)
        if version >= 2:
            check_rekeyed(store, archived, archived=True)
    store.close()
    assert ref.reference_open_and_use(path, "uqt_from_reference")["status"] == "running"


def check_rekeyed(store: TaskStore, rows: list[dict[str, object]], *, archived: bool) -> None:
    for row in rows:
        legacy_id = str(row["task_id"])
        shard_table = "archived_task_shards" if archived else "task_shards"
        with store.engine.connect() as conn:
            shard = (
                conn.exec_driver_sql(
                    f"SELECT * FROM {shard_table} WHERE platform_task_id = ?", (legacy_id,)
                )
                .mappings()
                .one()
            )
        new_id = shard["uniqc_task_id"]
        task = store.get_archived(new_id) if archived else store.get(new_id)
        assert task is not None and task.task_id.startswith("uqt_") and len(task.task_id) == 36
        assert task.metadata == ref.expected_metadata(str(row["metadata_json"]), legacy_id)
        assert (task.backend, task.status, task.shots) == (
            row["backend"],
            row["status"],
            row["shots"],
        )
        assert (task.submit_time, task.update_time) == (row["submit_time"], row["update_time"])
        assert task.result == (json.loads(str(row["result_json"])) if row["result_json"] else None)
        assert task.error_message == row.get("error_message")
        assert (shard["shard_index"], shard["circuit_count"], shard["sub_index_offset"]) == (
            0,
            1,
            0,
        )
        assert (shard["status"], shard["result_json"]) == (row["status"], row["result_json"])
        assert (shard["submit_time"], shard["update_time"]) == (
            row["submit_time"],
            row["update_time"],
        )
        if archived:
            assert shard["archived_at"] == task.archived_at == row["archived_at"]
        lookup = store.get_archived(legacy_id) if archived else store.get(legacy_id)
        assert lookup is None


def test_v5_repoints_shards_of_legacy_parents(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    ref.build_reference_file(path, 4)
    ref.insert_rows(path, "tasks", ref.legacy_rows(1))
    ref.insert_rows(path, "task_shards", [ref.child_shard("plat-000000")])
    store = TaskStore(url=sqlite_url(path))
    new_id = store.find_uniqc_id_by_platform_id("sub-job")
    assert new_id is not None and new_id.startswith("uqt_")
    shards = store.get_shards(new_id)
    assert [(s.shard_index, s.platform_task_id) for s in shards] == [
        (0, "sub-job"),
        (1, "plat-000000"),
    ]
    store.close()


def test_v5_downgrade_restores_legacy_ids(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    ref.build_reference_file(path, 4)
    rows = ref.legacy_rows(12)  # every kind of odd metadata, '{broken' included
    ref.insert_rows(path, "tasks", rows)
    before = dump(path)
    migrate(path)
    with TaskStore(url=sqlite_url(path)) as store:  # the text that is not JSON is kept
        kept = [t.metadata.get("legacy_metadata_text") for t in store.list()]
    assert sorted(k for k in kept if k is not None) == ["{broken", "{broken"]
    migrate(path, "0004", down=True)
    after = dump(path)
    assert after["task_shards"] == before["task_shards"] == []

    def normal(table: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        # JSON metadata is re-serialised: compare it parsed ("" and "{}" both read as {});
        # text that is not JSON comes back exactly
        def metadata(text: str) -> object:
            try:
                return json.loads(text or "{}")
            except ValueError:
                return ("not JSON", text)

        return sorted(((*r[:7], metadata(str(r[7])), *r[8:]) for r in table), key=repr)

    assert normal(after["tasks"]) == normal(before["tasks"])
    restored = {r[0]: r[7] for r in after["tasks"]}
    assert [restored[r["task_id"]] for r in rows if r["metadata_json"] == "{broken"] == [
        "{broken",
        "{broken",
    ]


def test_foreign_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    before = ref.foreign_file(path, 1234)
    with pytest.raises(ForeignDatabaseError, match="application_id 0x000004d2"):
        TaskStore(cache_dir=tmp_path)
    result = run_alembic("-x", f"url=sqlite:///{path}", "upgrade", "head")
    assert result.returncode != 0 and "ForeignDatabaseError" in result.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.sqlite"]


def test_non_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    path.write_text("these are my notes, not a database\n" * 10)
    before = path.read_bytes()
    with pytest.raises(ForeignDatabaseError, match="not a SQLite database"):
        TaskStore(cache_dir=tmp_path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    ref.build_reference_file(path, 5)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {CURRENT_SCHEMA_VERSION + 1}")  # past head
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError, match=f"schema version {CURRENT_SCHEMA_VERSION + 1}"):
        TaskStore(cache_dir=tmp_path)
    with pytest.raises(SchemaTooNewError):
        migrate(path)
    assert path.read_bytes() == before


def test_unknown_alembic_revision_is_too_new(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite"
    migrate(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE uniqc_store_alembic_version SET version_num = 'abc123'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="abc123"):
        TaskStore(cache_dir=tmp_path)


def test_reference_store_can_use_our_database(tmp_path: Path) -> None:
    store = TaskStore(cache_dir=tmp_path)
    store.save(TaskInfo(task_id="uqt_ours", backend="b"))
    store.close()
    assert header(tmp_path / "tasks.sqlite") == (CURRENT_SCHEMA_VERSION, APPLICATION_ID)
    row = ref.reference_open_and_use(tmp_path / "tasks.sqlite", "uqt_ref")
    assert row["shots"] == 7
    # the reference left it
    assert header(tmp_path / "tasks.sqlite") == (CURRENT_SCHEMA_VERSION, APPLICATION_ID)
    store = TaskStore(cache_dir=tmp_path)
    assert {t.task_id for t in store.list()} == {"uqt_ours", "uqt_ref"}
    assert store.get_shards("uqt_ref")[0].platform_task_id == "ref-p"
    store.close()


def _peak_migration_memory(tmp_path: Path, rows: int) -> int:
    path = tmp_path / f"big{rows}.sqlite"
    ref.build_reference_file(path, 4)
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO tasks VALUES (?, 'b', 'success', 1, 't', 't', ?, ?, NULL)",
        ((f"p{i:08d}", '{"r": 1}', '{"m": "' + "x" * 200 + '"}') for i in range(rows)),
    )
    conn.commit()
    conn.close()
    engine = create_store_engine(sqlite_url(path), foreign_keys=False)
    tracemalloc.start()
    try:
        upgrade(engine)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        engine.dispose()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM task_shards").fetchone()[0] == rows
    return peak


@pytest.mark.slow
def test_v5_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    small = _peak_migration_memory(tmp_path, 5_000)
    large = _peak_migration_memory(tmp_path, 40_000)
    assert large < small * 1.5, (small, large)


def test_alembic_check_is_clean(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.sqlite'}"
    for args in (["upgrade", "head"], ["check"]):
        result = run_alembic("-x", f"url={url}", *args)
        assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_migrations_run_with_foreign_keys_off_and_restore_them(tmp_path: Path) -> None:
    from uniqc_store.migrations.runner import migration_connection

    engine = create_store_engine(sqlite_url(tmp_path / "t.sqlite"))  # a store's engine: keys on
    with migration_connection(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
        conn.rollback()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
