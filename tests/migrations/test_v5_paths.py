"""Revision 0005's two implementations of one rule give the same rows.

On SQLite with JSON functions v5 runs as set statements; everywhere else as
Python batches. ``-x v5_rekey=python`` runs the Python batches on SQLite, so
both run here on copies of the same legacy file and are compared row for row
(new ids aside: rows are matched by their legacy id), and with the reference's
own v5 (``benchmarks.baseline.rekey_row_by_row``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from benchmarks.baseline import rekey_row_by_row
from tests import reference_db as ref
from tests.alembic_runner import run_alembic

PAIRS = (("tasks", "task_shards"), ("archived_tasks", "archived_task_shards"))
Rows = dict[tuple[str, str], dict[str, Any]]


def legacy_file(path: Path, *, child_shard: bool) -> None:
    """A v4 reference file: legacy live rows (more than one Python batch), legacy
    archived rows, a row already ``uqt_``, and optionally a shard under a legacy id."""
    ref.build_reference_file(path, 4)
    ref.insert_rows(path, "tasks", ref.legacy_rows(2100))
    archived = [
        {**r, "archived_at": "2024-02-01T00:00:00+00:00"} for r in ref.legacy_rows(40, prefix="o-")
    ]
    ref.insert_rows(path, "archived_tasks", archived)
    kept = {**ref.legacy_rows(1)[0], "task_id": "uqt_" + "0" * 32, "metadata_json": '{"k": 1}'}
    ref.insert_rows(path, "tasks", [kept])
    if child_shard:
        ref.insert_rows(path, "task_shards", [ref.child_shard("plat-000003")])


@contextmanager
def statements_seen() -> Iterator[list[str]]:
    """Every statement any engine in this process sends, while the block runs."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def upgrade(path: Path, *x: str) -> list[str]:
    with statements_seen() as seen:
        result = run_alembic("-x", f"url=sqlite:///{path}", *x, "upgrade", "head")
    assert result.returncode == 0, result.stderr
    return seen


def by_legacy_id(path: Path) -> Rows:
    """Each task row with its shards, keyed by (table, legacy id); the new id replaced by
    the legacy one, metadata parsed (the paths serialise JSON differently)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows: Rows = {}
    for table, shard_table in PAIRS:
        for task in conn.execute(f"SELECT * FROM {table}"):
            metadata = json.loads(task["metadata_json"])
            legacy_id = metadata.get("legacy_platform_id", task["task_id"])
            shards = conn.execute(
                f"SELECT * FROM {shard_table} WHERE uniqc_task_id = ? ORDER BY shard_index",
                (task["task_id"],),
            ).fetchall()
            rows[(table, legacy_id)] = {
                **dict(task),
                "task_id": legacy_id,
                "metadata_json": metadata,
                "new_id_is_uqt": task["task_id"].startswith("uqt_") and len(task["task_id"]) == 36,
                "shards": [{**dict(s), "uniqc_task_id": legacy_id} for s in shards],
            }
        orphans = conn.execute(
            f"SELECT count(*) FROM {shard_table} WHERE uniqc_task_id NOT IN"
            f" (SELECT task_id FROM {table})"
        ).fetchone()[0]
        assert orphans == 0, f"{orphans} {shard_table} rows without a parent"
    conn.close()
    return rows


@pytest.mark.parametrize("child_shard", [False, True], ids=["plain", "with-child-shard"])
def test_python_batches_match_the_sql_path(tmp_path: Path, child_shard: bool) -> None:
    sql_file, python_file = tmp_path / "sql.sqlite", tmp_path / "python.sqlite"
    legacy_file(sql_file, child_shard=child_shard)
    shutil.copy(sql_file, python_file)

    assert any("temp.v5_map" in s for s in upgrade(sql_file))  # the set statements ran
    assert not any("v5_map" in s for s in upgrade(python_file, "-x", "v5_rekey=python"))

    via_sql, via_python = by_legacy_id(sql_file), by_legacy_id(python_file)
    assert len(via_sql) == 2100 + 40 + 1
    assert via_python == via_sql
    moved = via_sql[("tasks", "plat-000003")]["shards"]
    expected = [(0, "sub-job"), (1, "plat-000003")] if child_shard else [(0, "plat-000003")]
    assert [(s["shard_index"], s["platform_task_id"]) for s in moved] == expected


def legacy_metadata_texts(path: Path) -> dict[tuple[str, str], str]:
    """Each legacy row's metadata text, by (table, id), before any v5."""
    with sqlite3.connect(path) as conn:
        return {
            (table, task_id): text
            for table, _ in PAIRS
            for task_id, text in conn.execute(f"SELECT task_id, metadata_json FROM {table}")
        }


def not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def test_both_paths_match_the_reference_v5(tmp_path: Path) -> None:
    """The reference's v5 deletes shards under legacy ids (its cascade), so the
    comparison uses a file without them; there the three agree on every row but
    one rule: metadata text that is not JSON, which the reference dropped (``{}``),
    is kept as ``legacy_metadata_text`` by both of ours (docs/adr/0001)."""
    theirs, sql_file, python_file = (tmp_path / f"{n}.sqlite" for n in ("ref", "sql", "py"))
    legacy_file(theirs, child_shard=False)
    shutil.copy(theirs, sql_file)
    shutil.copy(theirs, python_file)
    texts = legacy_metadata_texts(theirs)
    rekey_row_by_row(theirs)
    upgrade(sql_file)
    upgrade(python_file, "-x", "v5_rekey=python")
    reference = by_legacy_id(theirs)
    assert all(row["new_id_is_uqt"] for row in reference.values())
    expected = dict(reference)
    kept = 0
    for key, row in reference.items():
        text = texts[key]
        if text and not_json(text):
            assert row["metadata_json"] == {"legacy_platform_id": key[1]}  # the reference's loss
            expected[key] = {
                **row,
                "metadata_json": {**row["metadata_json"], "legacy_metadata_text": text},
            }
            kept += 1
    assert kept == 2100 // 6 + 40 // 6  # every sixth legacy row holds '{broken'
    assert by_legacy_id(sql_file) == expected
    assert by_legacy_id(python_file) == expected


@pytest.mark.parametrize("path_args", [(), ("-x", "v5_rekey=python")], ids=["sql", "python"])
def test_either_path_keeps_text_that_is_not_json_and_its_downgrade_restores_it(
    tmp_path: Path, path_args: tuple[str, ...]
) -> None:
    path = tmp_path / "t.sqlite"
    legacy_file(path, child_shard=False)
    odd = ["{broken", "  ", "not json at all ✗", '{"a": 1', "nul"]
    with sqlite3.connect(path) as conn:
        for i, text in enumerate(odd):
            conn.execute(
                "INSERT INTO archived_tasks (task_id, backend, status, submit_time, update_time,"
                " metadata_json, archived_at) VALUES (?, 'b', 'success', 't', 't', ?, 't')",
                (f"odd-{i}", text),
            )
    before = legacy_metadata_texts(path)
    upgrade(path, *path_args)
    rows = by_legacy_id(path)
    for i, text in enumerate(odd):
        assert rows[("archived_tasks", f"odd-{i}")]["metadata_json"] == {
            "legacy_metadata_text": text,
            "legacy_platform_id": f"odd-{i}",
        }
    result = run_alembic("-x", f"url=sqlite:///{path}", "downgrade", "0004")
    assert result.returncode == 0, result.stderr
    after = legacy_metadata_texts(path)
    assert set(after) == set(before)
    for key, text in before.items():
        if text and not_json(text):
            assert after[key] == text  # byte for byte
        else:
            assert json.loads(after[key] or "{}") == json.loads(text or "{}")


def test_an_unknown_v5_rekey_choice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    legacy_file(path, child_shard=False)
    result = run_alembic("-x", f"url=sqlite:///{path}", "-x", "v5_rekey=fast", "upgrade", "head")
    assert result.returncode != 0 and "expected auto or python" in result.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
