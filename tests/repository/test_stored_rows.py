"""Rows that did not come through save(): import lines and rows another tool wrote
(issue 23 part 5). An import is checked as save() checks a record, all or nothing,
naming the first bad line; a row the store cannot decode fails only the calls that
read it, with an UnreadableRowError naming it; ``uniqc-store check-rows`` lists them."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, create_engine, select, text, update
from sqlalchemy.exc import DBAPIError

from tests.http_server import http_client
from uniqc_store import (
    DatabaseBusyError,
    StoreError,
    TaskInfo,
    TaskShard,
    TaskStore,
    UnreadableRowError,
)
from uniqc_store.api.app import create_app
from uniqc_store.repository.row_check import RowScan
from uniqc_store.repository.transfer import BATCH, export_jsonl, import_jsonl
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks

EXE = str(Path(sys.executable).with_name("uniqc-store"))
TABLES = (tasks, task_shards, archived_tasks, archived_task_shards)


def plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def dump(store: TaskStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables (what "nothing was written" compares)."""
    with store.engine.connect() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t))), key=repr) for t in TABLES}


def task_row(task_id: str | None = "uqt_new", **changes: Any) -> dict[str, Any]:
    """A ``tasks`` row in stored form, as export writes it."""
    row = {
        "task_id": task_id,
        "backend": "b",
        "status": "success",
        "shots": 100,
        "submit_time": "2025-01-01T00:00:00+00:00",
        "update_time": "2025-01-01T00:00:01+00:00",
        "result_json": '{"counts": {"00": 1}}',
        "metadata_json": "{}",
        "error_message": None,
    }
    return {**row, **changes}


def shard_row(parent: str = "uqt_new", **changes: Any) -> dict[str, Any]:
    row = {
        "uniqc_task_id": parent,
        "shard_index": 0,
        "platform_task_id": "plat-1",
        "backend": "b",
        "circuit_count": 1,
        "sub_index_offset": 0,
        "status": "success",
        "result_json": None,
        "error_message": None,
        "submit_time": "t",
        "update_time": "t",
    }
    return {**row, **changes}


def line(table: str, row: dict[str, Any]) -> str:
    return json.dumps({"table": table, "row": row}) + "\n"


def seed(store: TaskStore) -> None:
    store.save(TaskInfo("uqt_seed", "b0", "success", result={"i": 1}))
    store.save_shard(TaskShard("uqt_seed", 0, "plat-0", "b0"))
    store.save(TaskInfo("uqt_old", "b0", "failed"))
    store.archive_task("uqt_old")


BAD_ROWS = [
    pytest.param("tasks", task_row(shots="many"), "shots must be an int, not str", id="shots-many"),
    pytest.param("tasks", task_row(shots=2**40), "shots must be between", id="shots-2**40"),
    pytest.param("tasks", task_row(shots=True), "shots must be an int, not bool", id="shots-bool"),
    pytest.param("tasks", task_row(shots=1.5), "shots must be an int, not float", id="shots-float"),
    pytest.param("tasks", task_row(""), "task_id must not be empty", id="empty-id"),
    pytest.param("tasks", task_row("uqt_\x00x"), "task_id must not contain NUL", id="nul-id"),
    pytest.param("tasks", task_row("x" * 256), "at most 255 characters, not 256", id="256-id"),
    pytest.param("tasks", task_row(None), "task_id must be a string", id="null-id"),
    pytest.param("tasks", task_row("uqt_\ud800"), "lone surrogate", id="surrogate-id"),
    pytest.param("tasks", task_row(status="lost"), "unknown task status 'lost'", id="status"),
    pytest.param("tasks", task_row(backend=7), "backend must be a string", id="backend-int"),
    pytest.param(
        "tasks", task_row(submit_time="t" * 256), "submit_time must be at most", id="submit-256"
    ),
    pytest.param("tasks", task_row(update_time=5), "update_time must be a string", id="update-int"),
    pytest.param(
        "tasks", task_row(update_time=None), "update_time must be a string", id="update-null"
    ),
    pytest.param(
        "tasks", task_row(result_json="{not json"), "is not valid JSON text", id="broken-json"
    ),
    pytest.param("tasks", task_row(result_json="NaN"), "cannot be stored as JSON", id="json-nan"),
    pytest.param(
        "tasks", task_row(result_json={"a": 1}), "must be JSON text, not dict", id="json-not-text"
    ),
    pytest.param(
        "tasks", task_row(result_json="[" * 101 + "]" * 101), "more than 100 levels", id="deep"
    ),
    pytest.param("tasks", task_row(result_json='"\\ud800"'), "lone surrogate", id="json-surrogate"),
    pytest.param(
        "tasks", task_row(metadata_json="[1]"), "must be a dict, not list", id="metadata-list"
    ),
    pytest.param(
        "tasks", task_row(metadata_json=None), "must be JSON text, not NoneType", id="metadata-null"
    ),
    pytest.param(
        "tasks", task_row(error_message="a\x00b"), "error_message must not contain NUL", id="nul"
    ),
    pytest.param(
        "tasks", {**task_row(), "extra": 1}, "tasks rows need the columns", id="unknown-column"
    ),
    pytest.param(
        "archived_tasks",
        {**task_row(), "archived_at": None},
        "archived_at must be a string",
        id="archived-at-null",
    ),
    pytest.param(
        "task_shards", shard_row(shard_index="0"), "shard_index must be an int", id="shard-index"
    ),
    pytest.param(
        "task_shards", shard_row(circuit_count=2**31), "circuit_count must be between", id="circ"
    ),
    pytest.param(
        "task_shards", shard_row(platform_task_id=""), "platform_task_id must not be", id="plat"
    ),
    pytest.param(
        "task_shards",
        shard_row("uqt_nobody"),
        "shard 0 of task 'uqt_nobody' has no task",
        id="shard-without-parent",
    ),
    pytest.param(
        "archived_task_shards",
        {**shard_row(status="exploded"), "archived_at": "t"},
        "unknown task status 'exploded'",
        id="archived-shard-status",
    ),
]


@pytest.mark.parametrize(("table", "row", "error"), BAD_ROWS)
def test_a_bad_import_row_is_refused_by_line_and_nothing_is_written(
    store: TaskStore, table: str, row: dict[str, Any], error: str
) -> None:
    seed(store)
    before = dump(store)
    lines = [
        line("tasks", task_row("uqt_seed", backend="changed")),  # an upsert, rolled back
        line("tasks", task_row("uqt_new")),
        line("task_shards", shard_row("uqt_new")),  # makes the tasks above be written first
        line(table, row),
    ]
    with pytest.raises(ValueError, match=r"^line 4: ") as refused:
        import_jsonl(store, lines)
    assert error in str(refused.value)
    assert dump(store) == before
    assert store.get("uqt_seed").backend == "b0"  # type: ignore[union-attr]


def test_the_same_rows_are_refused_by_save(store: TaskStore) -> None:
    """The import's rules are save()'s: what one refuses, the other does."""
    for record in (
        TaskInfo("uqt_x", "b", shots="many"),  # type: ignore[arg-type]
        TaskInfo("uqt_x", "b", shots=2**40),
        TaskInfo("", "b"),
        TaskInfo("uqt_\x00x", "b"),
        TaskInfo("x" * 256, "b"),
        TaskInfo("uqt_x", "b", result=float("nan")),  # type: ignore[arg-type]
        TaskInfo("uqt_x", "b", metadata=[1]),  # type: ignore[arg-type]
    ):
        with pytest.raises((TypeError, ValueError)):
            store.save(record)
    assert store.count() == 0


def test_a_bad_row_after_a_written_batch_rolls_everything_back(store: TaskStore) -> None:
    """Batches are written inside the one transaction: a bad line after the first
    full batch still leaves nothing behind."""
    seed(store)
    before = dump(store)
    good = [line("tasks", task_row(f"uqt_{i:05}")) for i in range(BATCH + 5)]
    bad = line("tasks", task_row("uqt_bad", shots="many"))
    with pytest.raises(ValueError, match=rf"^line {BATCH + 6}: shots must be an int"):
        import_jsonl(store, [*good, bad])
    assert dump(store) == before


def test_limits_are_inclusive_and_odd_but_valid_rows_enter(store: TaskStore) -> None:
    longest, odd = "x" * 255, "uqt_ünï 😀"
    lines = [
        line("tasks", task_row(longest, shots=2**31 - 1, submit_time="t" * 255)),
        line("tasks", task_row(odd, shots=-(2**31), result_json=' [1, "\\u0000"] ')),
        line("task_shards", shard_row(longest, shard_index=2**31 - 1)),
        line("tasks", task_row("uqt_null_result", result_json=None, error_message="e")),
    ]
    counts = import_jsonl(store, lines)
    assert counts == {"tasks": 3, "task_shards": 1, "archived_tasks": 0, "archived_task_shards": 0}
    assert store.get(longest).shots == 2**31 - 1  # type: ignore[union-attr]
    assert store.get(odd).result == [1, "\x00"]  # type: ignore[union-attr]
    assert store.get_shards(longest)[0].shard_index == 2**31 - 1
    assert store.get("uqt_null_result").result is None  # type: ignore[union-attr]


def test_a_shard_may_follow_its_task_in_the_file_or_in_the_store(store: TaskStore) -> None:
    seed(store)
    lines = [line("task_shards", shard_row("uqt_seed", shard_index=1))]
    assert import_jsonl(store, lines)["task_shards"] == 1
    assert [s.shard_index for s in store.get_shards("uqt_seed")] == [0, 1]


def test_export_import_round_trip_is_byte_identical(store: TaskStore, tmp_path: Path) -> None:
    """Every row that passes the checks comes back the same bytes (payload text kept)."""
    seed(store)
    lines = [line("tasks", task_row("uqt_ws", result_json=' {"a" : 1} ', metadata_json='{"k":2}'))]
    import_jsonl(store, lines)
    first = tmp_path / "first.jsonl"
    with first.open("w", encoding="utf-8") as out:
        export_jsonl(store, out)
    other = TaskStore(cache_dir=tmp_path / "other")
    with first.open(encoding="utf-8") as lines_in:
        import_jsonl(other, lines_in)
    second = tmp_path / "second.jsonl"
    with second.open("w", encoding="utf-8") as out:
        export_jsonl(other, out)
    other.close()
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(x)["row"] for x in first.read_text().splitlines()]
    assert {"task_id": "uqt_ws", "result_json": ' {"a" : 1} '}.items() <= next(
        r for r in rows if r.get("task_id") == "uqt_ws"
    ).items()


# -- rows another tool wrote --------------------------------------------------


def write_raw(store: TaskStore, sql: str, **params: Any) -> None:
    """Raw SQL, as another tool writes it."""
    with store.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_an_undecodable_row_fails_only_the_calls_that_read_it(
    store: TaskStore, backend: str
) -> None:
    """SQLite keeps 'many' in an INTEGER column (type affinity); the servers refuse it."""
    store.save(TaskInfo("uqt_ok", "good", "success", submit_time="2025-01-02"))
    store.save(TaskInfo("uqt_many", "bad", "success", submit_time="2025-01-01"))
    store.save_shard(TaskShard("uqt_ok", 0, "plat-0", "good"))
    sql = "UPDATE tasks SET shots = 'many' WHERE task_id = 'uqt_many'"
    if backend != "sqlite":
        with pytest.raises(DBAPIError):  # the column's type refuses it: nothing to decode
            write_raw(store, sql)
        assert [t.shots for t in store.list()] == [1000, 1000]
        return
    write_raw(store, sql)
    with pytest.raises(UnreadableRowError) as unreadable:
        store.get("uqt_many")
    error = unreadable.value
    assert isinstance(error, StoreError) and not isinstance(error, ValueError)
    assert (error.table, error.key, error.column) == ("tasks", "uqt_many", "shots")
    assert "tasks row 'uqt_many': shots holds 'many'" in str(error)
    assert "uniqc-store check-rows" in str(error)
    with pytest.raises(UnreadableRowError, match="'uqt_many'"):
        store.list()
    # every other read works
    assert store.get("uqt_ok").shots == 1000  # type: ignore[union-attr]
    assert [t.task_id for t in store.list(backend="good")] == ["uqt_ok"]
    assert [t.task_id for t in store.list(limit=1)] == ["uqt_ok"]  # newest first
    assert [t.task_id for t in store.iter_tasks(backend="good")] == ["uqt_ok"]
    store.save(TaskInfo("uqt_a", "good", "success", submit_time="2025-01-01"))
    walked = store.iter_tasks(batch_size=1)  # id order: the rows before it come
    assert next(walked).task_id == "uqt_a"
    with pytest.raises(UnreadableRowError, match="'uqt_many'"):
        next(walked)
    assert store.delete("uqt_a")
    assert store.count() == 2 and store.count(backend="bad") == 1
    assert store.get_shards("uqt_ok")[0].platform_task_id == "plat-0"
    # the row can be moved and deleted: the store does not need to decode it for that
    assert store.archive_task("uqt_many")
    with pytest.raises(UnreadableRowError) as archived:
        store.get_archived("uqt_many")
    assert (archived.value.table, archived.value.column) == ("archived_tasks", "shots")
    assert store.delete_archived("uqt_many")
    assert [t.task_id for t in store.list()] == ["uqt_ok"]


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("'12'", 12),  # affinity makes it 12
        ("12.0", 12),  # and this
        ("1.5", None),  # a REAL stays 1.5: no faithful int
        ("X'01'", None),  # a BLOB
        ("'many'", None),
    ],
)
def test_integer_columns_on_sqlite(tmp_path: Path, value: str, read: int | None) -> None:
    store = TaskStore(cache_dir=tmp_path)
    store.save(TaskInfo("uqt_1", "b"))
    store.save_shard(TaskShard("uqt_1", 0, "p", "b"))
    write_raw(store, f"UPDATE tasks SET shots = {value}")
    write_raw(store, f"UPDATE task_shards SET circuit_count = {value}")
    if read is None:
        with pytest.raises(UnreadableRowError, match="shots holds"):
            store.get("uqt_1")
        with pytest.raises(UnreadableRowError) as shard:
            store.get_shards("uqt_1")
        assert (shard.value.key, shard.value.column) == (("uqt_1", 0), "circuit_count")
    else:
        assert store.get("uqt_1").shots == read  # type: ignore[union-attr]
        assert store.get_shards("uqt_1")[0].circuit_count == read
    store.close()


def test_text_and_key_columns_on_sqlite(tmp_path: Path) -> None:
    """A BLOB in a text column reads as its UTF-8 text (a payload then decodes);
    a NULL or BLOB primary key has no reading: only the rows holding one fail."""
    store = TaskStore(cache_dir=tmp_path)
    store.save(TaskInfo("uqt_blob", "b", submit_time="2025-01-02"))
    write_raw(
        store,
        "UPDATE tasks SET backend = X'68c3a9', result_json = CAST('{\"a\": 1}' AS BLOB), "
        "error_message = X'ff00'",
    )
    info = store.get("uqt_blob")
    assert info is not None and info.backend == "hé" and info.result == {"a": 1}
    assert info.error_message == "\\xff\x00"
    for column in ("backend", "status", "submit_time", "update_time"):  # one at a time
        store.save(TaskInfo("uqt_one", "b", submit_time="2025-01-03"))
        write_raw(store, f"UPDATE tasks SET {column} = X'6869' WHERE task_id = 'uqt_one'")
        assert getattr(store.get("uqt_one"), column) == "hi"
        assert store.delete("uqt_one")
    write_raw(
        store,
        "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time) "
        "VALUES (NULL, 'b', 'success', 1, '2025-01-01', 'u')",
    )
    with pytest.raises(UnreadableRowError, match="tasks row None: task_id holds None"):
        store.list()
    assert store.list(limit=1)[0].task_id == "uqt_blob" and store.count() == 2
    store.close()


def null_shots_file(path: Path) -> TaskStore:
    """A database whose ``tasks.shots`` lost NOT NULL (an older tool's schema), with a
    NULL in it: the schema text is edited the way SQLite documents for that."""
    store = TaskStore(cache_dir=path)
    store.save(TaskInfo("uqt_ok", "b", submit_time="2025-01-02"))
    store.save(TaskInfo("uqt_null", "b", submit_time="2025-01-01"))
    store.close()
    raw = sqlite3.connect(path / "tasks.sqlite", isolation_level=None)
    (version,) = raw.execute("PRAGMA schema_version").fetchone()
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute(
        "UPDATE sqlite_master SET sql = replace(sql, 'shots INTEGER DEFAULT 0 NOT NULL', "
        "'shots INTEGER DEFAULT 0') WHERE name = 'tasks'"
    )
    raw.execute(f"PRAGMA schema_version = {version + 1}")
    raw.execute("PRAGMA writable_schema = OFF")
    raw.close()
    raw = sqlite3.connect(path / "tasks.sqlite")
    raw.execute("UPDATE tasks SET shots = NULL WHERE task_id = 'uqt_null'")
    raw.commit()
    raw.close()
    return TaskStore(cache_dir=path)


def test_a_null_in_a_not_null_column(tmp_path: Path) -> None:
    store = null_shots_file(tmp_path)
    with pytest.raises(UnreadableRowError) as unreadable:
        store.get("uqt_null")
    assert (unreadable.value.key, unreadable.value.column) == ("uqt_null", "shots")
    assert store.get("uqt_ok").shots == 1000  # type: ignore[union-attr]
    assert [t.task_id for t in store.list(limit=1)] == ["uqt_ok"]
    store.close()


def test_rows_the_servers_types_allow_read_fine(store: TaskStore, backend: str) -> None:
    """What another tool can write within the column types (an empty id, an unknown
    status, broken JSON; a 300-character id where TEXT allows it) reads back; only the
    import of its export refuses it, naming the line."""
    store.save(TaskInfo("uqt_ok", "b"))
    write_raw(
        store,
        "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time, "
        "result_json, metadata_json) VALUES (:id, 'b', 'exploded', 1, 't', 'u', '{x', '[1]')",
        id="",
    )
    if backend != "mysql":  # VARCHAR(255) there
        write_raw(
            store, "UPDATE tasks SET task_id = :long WHERE task_id = 'uqt_ok'", long="x" * 300
        )
    listed = {t.task_id: t for t in store.list()}
    assert listed[""].status == "exploded" and listed[""].result == {"_invalid_json": "{x"}
    assert listed[""].metadata == [1]  # type: ignore[comparison-overlap]  # as stored
    assert store.count() == 2
    found = {(p.key, p.column) for p in RowScan(store)}
    assert {(("",), "task_id"), (("",), "status"), (("",), "result_json")} <= found
    assert (("",), "metadata_json") in found
    if backend != "mysql":
        assert (("x" * 300,), "task_id") in found
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

    export_jsonl(store, Out())  # type: ignore[arg-type]
    target = TaskStore(url="sqlite://")
    with pytest.raises(ValueError, match=r"^line \d: task_id must"):
        import_jsonl(target, "".join(lines).splitlines())
    assert target.count() == 0
    target.close()


# -- the REST API -------------------------------------------------------------


def test_the_api_answers_with_a_clear_409(tmp_path: Path) -> None:
    store = TaskStore(cache_dir=tmp_path)
    store.save(TaskInfo("uqt_ok", "good", submit_time="2025-01-02"))
    store.save(TaskInfo("uqt_many", "bad", submit_time="2025-01-01"))
    write_raw(store, "UPDATE tasks SET shots = 'many' WHERE task_id = 'uqt_many'")
    with http_client(create_app(store)) as client:
        listed = client.get("/api/tasks")
        assert listed.status_code == 409, listed.text
        detail = listed.json()["detail"]
        assert "'uqt_many'" in detail and "shots" in detail and "check-rows" in detail
        assert client.get("/api/tasks/uqt_many").status_code == 409
        good = client.get("/api/tasks", params={"backend": "good"})
        assert good.status_code == 200 and [t["task_id"] for t in good.json()["tasks"]] == [
            "uqt_ok"
        ]
        assert client.get("/api/tasks/uqt_ok").status_code == 200
        assert client.get("/api/tasks/counts").json()["total"] == 2
        # the dashboard's own listing reads the summary columns as they are
        page = client.get("/api/dashboard/tasks")
        assert page.status_code == 200, page.text
        assert client.get("/api/dashboard/task/uqt_many").status_code == 409
        declared = client.get("/openapi.json").json()["paths"]["/api/tasks"]["get"]["responses"]
        assert "409" in declared
        assert client.delete("/api/tasks/uqt_many").status_code == 200  # the fix works
        assert client.get("/api/tasks").status_code == 200
    store.close()


# -- uniqc-store check-rows ---------------------------------------------------


def check_rows(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "check-rows", *args, "--url", plain(url)], capture_output=True, text=True, timeout=120
    )


def test_check_rows_lists_what_reads_and_imports_refuse(store: TaskStore, backend: str) -> None:
    clean = check_rows(store.url)
    assert clean.returncode == 0 and clean.stdout == (
        "checked 0 row(s): every one reads back and could have been saved\n"
    )
    seed(store)
    assert check_rows(store.url).returncode == 0
    write_raw(store, "UPDATE tasks SET status = 'exploded', result_json = :r", r='{"token": "s3')
    if backend == "sqlite":
        write_raw(store, "UPDATE task_shards SET circuit_count = 'lots'")
    done = check_rows(store.url)
    assert done.returncode == 1, done
    out = done.stdout.splitlines()
    assert "tasks 'uqt_seed': refused by save/import: status (holds 'exploded'):" in out[0]
    assert out[1].startswith("tasks 'uqt_seed': refused by save/import: result_json: ")
    assert "s3" not in done.stdout  # payloads are never shown
    if backend == "sqlite":
        assert out[2].startswith(
            "task_shards 'uqt_seed', 0: UNREADABLE: circuit_count (holds 'lots'): "
        )
        assert done.stderr.startswith("error: 2 of 3 row(s) break the store's rules, 1 of them")
    else:
        assert len(out) == 2
        assert done.stderr.startswith("error: 1 of 3 row(s) break the store's rules, 0 of them")
    as_json = [json.loads(x) for x in check_rows(store.url, "--json").stdout.splitlines()]
    assert as_json[0] == {
        "table": "tasks",
        "key": ["uqt_seed"],
        "column": "status",
        "problem": "unknown task status 'exploded'; expected one of: pending, running, "
        "success, failed, cancelled",
        "unreadable": False,
        "value": "exploded",
    }


def test_check_rows_walks_every_row_in_batches(store: TaskStore, backend: str) -> None:
    for i in range(7):
        store.save(TaskInfo(f"uqt_{i}", "b"))
        store.save_shard(TaskShard(f"uqt_{i}", 0, "p", "b"))
        store.save_shard(TaskShard(f"uqt_{i}", 1, "p", "b"))
    write_raw(store, "UPDATE tasks SET status = 'odd' WHERE task_id IN ('uqt_1', 'uqt_6')")
    write_raw(store, "UPDATE task_shards SET backend = '' WHERE shard_index = 1")  # allowed
    store.archive_task("uqt_3")
    if backend == "sqlite":  # a NULL key, reachable by no keyset
        write_raw(
            store,
            "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time) "
            "VALUES (NULL, 'b', 'success', 1, 't', 'u')",
        )
    scan = RowScan(store, batch=2)
    found = [(p.table, p.key, p.column) for p in scan]
    nulls = 1 if backend == "sqlite" else 0
    assert scan.rows == 6 + 12 + 1 + 2 + nulls
    expected: list[tuple[str, tuple[str | None], str]] = []
    if nulls:
        expected.append(("tasks", (None,), "task_id"))
    expected += [("tasks", ("uqt_1",), "status"), ("tasks", ("uqt_6",), "status")]
    assert found == expected


# -- all or nothing when the database asks for a retry ------------------------


def test_an_import_is_never_retried_on_half_read_lines(store: TaskStore, backend: str) -> None:
    """The executor runs a transaction again when the server aborts it as a deadlock
    victim; an import cannot be, its lines are read once: it says so, and nothing is
    written (before, the second attempt found no lines and "imported" 0).

    The deadlock is made on purpose: another transaction has changed many rows, then
    locks ``uqt_locked``; the import inserts ``uqt_new`` and waits for ``uqt_locked``;
    the other transaction then asks for ``uqt_new``. InnoDB rolls back the lighter
    transaction, the import."""
    if backend != "mysql":
        pytest.skip("a deadlock the executor retries, by InnoDB's victim rule: MySQL/MariaDB")
    heavy = [f"uqt_heavy_{i:03}" for i in range(100)]
    store.save_many([TaskInfo(task_id, "b") for task_id in heavy])
    store.save(TaskInfo("uqt_locked", "b"))
    locker = create_engine(store.url)
    locked, done = threading.Event(), threading.Event()

    def import_waits(conn: Any) -> bool:
        waiting = "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
        for _ in range(300):  # 30 s at most
            if conn.execute(text(waiting)).scalar():
                return True
            done.wait(0.1)
        return False

    def make_the_deadlock() -> None:
        with locker.connect() as watcher, locker.begin() as conn:
            # one key at a time, so only those rows are locked (a range would lock gaps)
            for task_id in heavy:
                one = update(tasks).where(tasks.c.task_id == task_id)
                conn.execute(one.values(status="running"))
            conn.execute(text("SELECT * FROM tasks WHERE task_id = 'uqt_locked' FOR UPDATE"))
            locked.set()
            if import_waits(watcher):
                conn.execute(text("SELECT * FROM tasks WHERE task_id = 'uqt_new' FOR UPDATE"))
            done.wait(60)

    holder = threading.Thread(target=make_the_deadlock)
    holder.start()
    try:
        assert locked.wait(30)
        lines = [line("tasks", task_row("uqt_new")), line("tasks", task_row("uqt_locked"))]
        with pytest.raises(DatabaseBusyError, match="nothing was imported; run it again"):
            import_jsonl(store, lines)
    finally:
        done.set()
        holder.join(60)
        locker.dispose()
    assert store.get("uqt_new") is None and store.count() == 101
