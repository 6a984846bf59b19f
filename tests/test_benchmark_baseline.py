"""The benchmark's baseline does the same work as the store, so its ratios compare like
with like. (No timings here: ``python -m benchmarks`` is the judge of speed.)"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from uniqc_store import TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import sqlite_url_for
from uniqc_store.migrations.runner import upgrade

baseline = pytest.importorskip("benchmarks.baseline", reason="run from the repository root")
bench = pytest.importorskip("benchmarks.run", reason="run from the repository root")


def _rows(path: Path, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    finally:
        conn.close()


def _by_legacy_id(path: Path, tasks: str, shards: str) -> dict[str, tuple[Any, ...]]:
    """Each migrated row keyed by its old id: (row without ids/metadata, metadata, shard)."""
    shard_of = {s["uniqc_task_id"]: s for s in _rows(path, shards)}
    out = {}
    for row in _rows(path, tasks):
        metadata = json.loads(row.pop("metadata_json"))
        shard = dict(shard_of[row.pop("task_id")])
        del shard["uniqc_task_id"]
        out[metadata["legacy_platform_id"]] = (row, metadata, shard)
    return out


@pytest.mark.parametrize("rekey", ["rekey_row_by_row", "rekey_floor"])
def test_baseline_and_floor_v5_give_what_our_v5_gives(tmp_path: Path, rekey: str) -> None:
    ours, ref = tmp_path / "ours.sqlite", tmp_path / "ref.sqlite"
    for path in (ours, ref):
        bench.build_legacy_file(path, 300, 30)
    engine = create_store_engine(sqlite_url_for(ours), foreign_keys=False)
    upgrade(engine)
    engine.dispose()
    getattr(baseline, rekey)(ref)
    for tasks, shards in (("tasks", "task_shards"), ("archived_tasks", "archived_task_shards")):
        mine, theirs = _by_legacy_id(ours, tasks, shards), _by_legacy_id(ref, tasks, shards)
        assert len(mine) == (300 if tasks == "tasks" else 30)
        assert mine == theirs
        for path in (ours, ref):
            assert all(_is_uqt_uuid4(r["task_id"]) for r in _rows(path, tasks))


def _is_uqt_uuid4(task_id: str) -> bool:
    hex_digits = task_id.removeprefix("uqt_")
    parsed = uuid.UUID(hex_digits)
    return parsed.hex == hex_digits and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_reference_like_store_reads_and_writes_what_the_store_does(tmp_path: Path) -> None:
    TaskStore(cache_dir=tmp_path / "ref").close()  # the schema, made by the store
    ref = baseline.ReferenceLikeStore(tmp_path / "ref" / "tasks.sqlite")
    with TaskStore(cache_dir=tmp_path / "ours") as store:
        records = [bench.row(i) for i in range(40)]
        store.save_many(bench.info(r) for r in records)
        for r in records:
            ref.save(r)
            bench.add_shard(store, ref, r["task_id"], f"p-{r['task_id']}")
        for r in records[:5]:
            mine, theirs = store.get(r["task_id"]), ref.get(r["task_id"])
            assert mine is not None and theirs is not None
            assert (mine.result, mine.metadata, mine.status) == (
                theirs["result"],
                theirs["metadata"],
                theirs["status"],
            )
        listed = [t.task_id for t in store.list(status="running", limit=5)]
        assert listed == [t["task_id"] for t in ref.list("running", 5)]
        assert store.count(backend="originq:WK_1") == ref.count("originq:WK_1")
        mine_shards = [
            (s.shard_index, s.platform_task_id) for s in store.get_shards("uqt_00000003")
        ]
        their_shards = [
            (s["shard_index"], s["platform_task_id"]) for s in ref.get_shards("uqt_00000003")
        ]
        assert mine_shards == their_shards == [(0, "p-uqt_00000003")]
        assert store.find_uniqc_id_by_platform_id("p-uqt_00000003") == "uqt_00000003"
        assert ref.find_uniqc_id_by_platform_id("p-uqt_00000003") == "uqt_00000003"
        assert store.archive_task("uqt_00000007") and ref.archive_task("uqt_00000007")
        assert store.get("uqt_00000007") is None and ref.get("uqt_00000007") is None
        archived = _rows(tmp_path / "ref" / "tasks.sqlite", "archived_task_shards")
        assert [s["platform_task_id"] for s in archived] == ["p-uqt_00000007"]
        assert [s.platform_task_id for s in store.get_archived_shards("uqt_00000007")] == [
            "p-uqt_00000007"
        ]
