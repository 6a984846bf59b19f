"""Keys compare exactly on every engine: ``"x"`` and ``"x "`` are two ids (issue 23 point 2).

MySQL/MariaDB's ``utf8mb4_bin`` is PAD SPACE (``'x' = 'x '``), so before revision
0006 the two were one primary key there. These tests run through the ``store``
fixture (SQLite file, PostgreSQL, MariaDB) and through the real ``uniqc-store``
export and import commands.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.cli.commands import main

PLAIN, PADDED, MORE = "uqt_pad", "uqt_pad ", "uqt_pad   "


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_ids_differing_by_trailing_spaces_are_two_tasks(store: TaskStore) -> None:
    store.save(TaskInfo(task_id=PLAIN, backend="b", status="success"))
    store.save(TaskInfo(task_id=PADDED, backend="b ", status="failed"))
    assert store.count() == 2
    assert {t.task_id for t in store.list()} == {PLAIN, PADDED}
    plain, padded = store.get(PLAIN), store.get(PADDED)
    assert plain is not None and (plain.task_id, plain.status) == (PLAIN, "success")
    assert padded is not None and (padded.task_id, padded.status) == (PADDED, "failed")
    assert store.get(MORE) is None
    assert store.count(backend="b") == 1 and store.count(backend="b ") == 1

    assert store.delete(MORE) is False
    assert store.delete(PADDED) is True
    assert store.count() == 1 and store.get(PLAIN) is not None and store.get(PADDED) is None


def test_shard_lookups_with_trailing_spaces_find_only_exact_rows(store: TaskStore) -> None:
    store.save(TaskInfo(task_id=PLAIN, backend="b"))
    store.save_shard(TaskShard(PLAIN, 0, "plat-1", "b"))
    assert store.get_shards(PADDED) == []
    assert store.get_shard_by_platform_id("plat-1 ") is None
    assert store.find_uniqc_id_by_platform_id("plat-1 ") is None
    assert store.find_uniqc_id_by_platform_id("plat-1", backend="b ") is None
    assert store.delete_shards(PADDED) == 0

    store.save(TaskInfo(task_id=PADDED, backend="b"))
    store.save_shard(TaskShard(PADDED, 0, "plat-1 ", "b"))
    assert [s.platform_task_id for s in store.get_shards(PLAIN)] == ["plat-1"]
    assert [s.platform_task_id for s in store.get_shards(PADDED)] == ["plat-1 "]
    assert store.find_uniqc_id_by_platform_id("plat-1") == PLAIN
    assert store.find_uniqc_id_by_platform_id("plat-1 ") == PADDED
    shard = store.get_shard_by_platform_id("plat-1 ")
    assert shard is not None and shard.uniqc_task_id == PADDED

    assert store.delete(PLAIN) is True  # cascades to its shard only
    assert store.get_shards(PLAIN) == [] and len(store.get_shards(PADDED)) == 1


def test_archive_keeps_the_two_apart(store: TaskStore) -> None:
    for task_id in (PLAIN, PADDED):
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
        store.save_shard(TaskShard(task_id, 0, f"p-{task_id}", "b"))
    assert store.archive_task(PADDED) is True
    assert store.get(PLAIN) is not None and store.get(PADDED) is None
    assert store.get_archived(PLAIN) is None
    assert [s.platform_task_id for s in store.get_archived_shards(PADDED)] == [f"p-{PADDED}"]
    assert store.archive_task(PLAIN) is True
    assert store.count_archived() == 2
    assert store.delete_archived(PADDED) is True
    archived = store.get_archived(PLAIN)
    assert archived is not None and archived.task_id == PLAIN


def test_export_and_import_keep_both(store: TaskStore, tmp_path: Path) -> None:
    for task_id in (PLAIN, PADDED, MORE):
        store.save(TaskInfo(task_id=task_id, backend="b", metadata={"id": task_id}))
        store.save_shard(TaskShard(task_id, 0, task_id.replace("uqt", "plat"), "b"))
    url = store.url.render_as_string(hide_password=False)
    exported = tmp_path / "keys.jsonl"
    assert run("export", str(exported), "--url", url)[0] == 0
    store.clear_all()
    code, out = run("import", str(exported), "--url", url)
    assert code == 0 and out.startswith("imported 3 tasks, 3 task_shards"), out
    assert store.count() == 3
    for task_id in (PLAIN, PADDED, MORE):
        task = store.get(task_id)
        assert task is not None and task.metadata == {"id": task_id}
        assert [s.platform_task_id for s in store.get_shards(task_id)] == [
            task_id.replace("uqt", "plat")
        ]
