"""``uniqc-store downgrade`` says what it would drop and needs --yes (issue 16 point 6)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import URL

from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.cli.commands import main
from uniqc_store.records import CURRENT_SCHEMA_VERSION


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def seeded(url: URL) -> TaskStore:
    store = TaskStore(url=url, auto_migrate=True)
    for i in range(3):
        store.save(TaskInfo(task_id=f"uqt_{i}", backend="b", error_message="boom" if i else None))
        store.save_shard(TaskShard(f"uqt_{i}", 0, f"plat-{i}", "b"))
    store.archive_task("uqt_0")
    return store


def test_a_lossy_downgrade_lists_the_rows_and_needs_yes(fresh_url: URL) -> None:
    store = seeded(fresh_url)
    url = fresh_url.render_as_string(hide_password=False)
    code, out = run("downgrade", "0003", "--url", url)
    assert code == 1
    assert f"from schema version {CURRENT_SCHEMA_VERSION} to 3 would lose:" in out
    assert "  task_shards: 2 row(s) (the table is dropped)\n" in out
    assert "  archived_task_shards: 1 row(s) (the table is dropped)\n" in out
    assert out.endswith(
        "error: nothing was changed; run again with --yes to downgrade anyway "
        "(uniqc-store export FILE saves the rows first)\n"
    )
    assert store.schema_version() == CURRENT_SCHEMA_VERSION and len(store.get_shards("uqt_1")) == 1

    for version in range(CURRENT_SCHEMA_VERSION, 9, -1):  # 10 and later lose no rows
        code, out = run("downgrade", "-1", "--url", url)
        assert code == 0 and out.endswith(
            f"downgraded from schema version {version} to {version - 1}\n"
        )
    code, out = run("downgrade", "-1", "--url", url)  # 9 -> 8 drops the servers' counters
    assert code == 0 and out.endswith("downgraded from schema version 9 to 8\n")
    code, out = run("downgrade", "-1", "--url", url)  # 8 -> 7 changes PostgreSQL collations
    assert code == 0 and out.endswith("downgraded from schema version 8 to 7\n")
    code, out = run("downgrade", "-1", "--url", url)  # 7 -> 6 drops indexes and counters only
    assert code == 0 and out.endswith("downgraded from schema version 7 to 6\n")
    code, out = run("downgrade", "-1", "--url", url)  # 6 -> 5 loses nothing: no question
    assert code == 0 and out.endswith("downgraded from schema version 6 to 5\n")
    code, out = run("downgrade", "-1", "--url", url)  # nor does 5 -> 4
    assert code == 0 and out.endswith("downgraded from schema version 5 to 4\n")
    code, out = run("downgrade", "-1", "--url", url)
    assert code == 1 and "from schema version 4 to 3" in out
    assert run("downgrade", "-1", "--yes", "--url", url)[1].endswith(" 4 to 3\n")
    code, out = run("downgrade", "base", "--url", url)
    assert code == 1
    assert "  tasks.error_message: 2 row(s) with a value (column dropped)\n" in out
    assert "  archived_tasks: 1 row(s) (the table is dropped)\n" in out
    assert "  tasks: 2 row(s) (the table is dropped)\n" in out
    assert run("downgrade", "base", "--yes", "--url", url)[1].endswith(" 3 to 0\n")
    store.close()


def test_downgrade_sql_prints_and_changes_nothing(fresh_url: URL) -> None:
    store = seeded(fresh_url)
    url = fresh_url.render_as_string(hide_password=False)
    code, out = run("downgrade", "0003", "--sql", "--url", url)
    assert code == 0 and "DROP TABLE IF EXISTS task_shards" in out
    assert store.schema_version() == CURRENT_SCHEMA_VERSION and store.count() == 2
    store.close()


def test_downgrade_above_the_database_is_refused(fresh_url: URL) -> None:
    store = seeded(fresh_url)
    url = fresh_url.render_as_string(hide_password=False)
    assert run("downgrade", "0004", "--url", url)[0] == 0
    code, out = run("downgrade", "0005", "--url", url)
    assert code == 1 and "below 0005: use upgrade" in out
    code, out = run("downgrade", "sideways", "--url", url)
    assert code == 2 and "Invalid value for 'REVISION': unknown revision 'sideways'" in out
    store.close()
