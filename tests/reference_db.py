"""Builds SQLite files exactly as the reference store left them at each version.

The DDL is the reference's (seed 000), written out per version; files are
made with plain ``sqlite3`` so nothing of this package touches them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

APPLICATION_ID = 0x554E4943
#: The reference's CURRENT_SCHEMA_VERSION: it migrates a file only below this.
REFERENCE_VERSION = 5

TASKS_DDL = """CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    shots INTEGER NOT NULL DEFAULT 0,
    submit_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    result_json TEXT,
    metadata_json TEXT NOT NULL DEFAULT '{}'
)"""

ARCHIVED_TASKS_DDL = """CREATE TABLE IF NOT EXISTS archived_tasks (
    task_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    shots INTEGER NOT NULL DEFAULT 0,
    submit_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    result_json TEXT,
    metadata_json TEXT NOT NULL DEFAULT '{}',
    archived_at TEXT NOT NULL
)"""

_SHARD_COLUMNS = """uniqc_task_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    platform_task_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    circuit_count INTEGER NOT NULL DEFAULT 1,
    sub_index_offset INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    result_json TEXT,
    error_message TEXT,
    submit_time TEXT NOT NULL,
    update_time TEXT NOT NULL"""

VERSION_DDL: dict[int, list[str]] = {
    1: [
        TASKS_DDL,
        "CREATE INDEX IF NOT EXISTS tasks_backend_idx ON tasks(backend)",
        "CREATE INDEX IF NOT EXISTS tasks_status_idx ON tasks(status)",
        "CREATE INDEX IF NOT EXISTS tasks_submit_time_idx ON tasks(submit_time)",
    ],
    2: [
        ARCHIVED_TASKS_DDL,
        "CREATE INDEX IF NOT EXISTS archived_backend_idx ON archived_tasks(backend)",
        "CREATE INDEX IF NOT EXISTS archived_status_idx ON archived_tasks(status)",
        "CREATE INDEX IF NOT EXISTS archived_submit_time_idx ON archived_tasks(submit_time)",
    ],
    3: [
        "ALTER TABLE tasks ADD COLUMN error_message TEXT",
        "ALTER TABLE archived_tasks ADD COLUMN error_message TEXT",
    ],
    4: [
        f"""CREATE TABLE IF NOT EXISTS task_shards (
    {_SHARD_COLUMNS},
    PRIMARY KEY (uniqc_task_id, shard_index),
    FOREIGN KEY (uniqc_task_id) REFERENCES tasks(task_id) ON DELETE CASCADE
)""",
        "CREATE INDEX IF NOT EXISTS task_shards_platform_idx ON task_shards(platform_task_id)",
        "CREATE INDEX IF NOT EXISTS task_shards_status_idx ON task_shards(status)",
        f"""CREATE TABLE IF NOT EXISTS archived_task_shards (
    {_SHARD_COLUMNS},
    archived_at TEXT NOT NULL,
    PRIMARY KEY (uniqc_task_id, shard_index)
)""",
        "CREATE INDEX IF NOT EXISTS archived_task_shards_platform_idx "
        "ON archived_task_shards(platform_task_id)",
    ],
    5: [],  # v5 is a data migration only
}

#: Legacy metadata worth testing: plain, non-dict JSON, JSON null, broken, empty.
ODD_METADATA = ['{"a": 1, "ünï": "çødé 😀"}', "[1, 2, 3]", '"just text"', "null", "{broken", ""]


def build_reference_file(path: Path, version: int) -> None:
    """A file as the reference store made it at ``version`` (schema only)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for step in range(1, version + 1):
        for ddl in VERSION_DDL[step]:
            conn.execute(ddl)
        conn.execute(f"PRAGMA user_version = {step}")
    conn.commit()
    conn.close()


def legacy_rows(count: int, *, prefix: str = "plat-") -> list[dict[str, Any]]:
    """``count`` legacy task rows (platform ids), cycling through odd metadata."""
    rows = []
    for i in range(count):
        rows.append(
            {
                "task_id": f"{prefix}{i:06d}",
                "backend": f"originq:WK_{i % 3}",
                "status": ("success", "failed", "running", "pending", "cancelled")[i % 5],
                "shots": 100 + i,
                "submit_time": f"2024-01-01T00:00:{i % 60:02d}+00:00",
                "update_time": f"2024-01-02T00:00:{i % 60:02d}+00:00",
                "result_json": json.dumps({"counts": {"00": i}}) if i % 2 else None,
                "metadata_json": ODD_METADATA[i % len(ODD_METADATA)],
                "error_message": "boom ✗" if i % 5 == 1 else None,
            }
        )
    return rows


def child_shard(parent: str) -> dict[str, Any]:
    """A shard row pointing at ``parent`` (a legacy id, before v5 re-keys it)."""
    return {
        "uniqc_task_id": parent,
        "shard_index": 0,
        "platform_task_id": "sub-job",
        "backend": "b",
        "status": "running",
        "submit_time": "t",
        "update_time": "t",
    }


def foreign_file(path: Path, application_id: int) -> bytes:
    """A SQLite file of another application; returns its bytes, to compare later."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.execute("CREATE TABLE theirs (x)")
    conn.commit()
    conn.close()
    return path.read_bytes()


def insert_rows(path: Path, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows with plain sqlite3 (columns a version lacks are dropped)."""
    conn = sqlite3.connect(path)
    existing = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    for row in rows:
        present = {k: v for k, v in row.items() if k in existing}
        names = ", ".join(present)
        marks = ", ".join(f":{k}" for k in present)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", present)
    conn.commit()
    conn.close()


def expected_metadata(raw: str, legacy_id: str) -> dict[str, Any]:
    """What v5 must turn a legacy row's metadata into (the rule, stated independently).

    The reference's v5 turned text that is not JSON into ``{}``; ours keeps it
    (docs/adr/0001)."""
    if raw == "":
        parsed: Any = {}
    else:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"legacy_metadata_text": raw}
    if not isinstance(parsed, dict):
        parsed = {"legacy_metadata_raw": parsed}
    return {**parsed, "legacy_platform_id": legacy_id}


def schema_facts(path: Path) -> dict[str, Any]:
    """Everything SQLite reports about the four tables' shape."""
    conn = sqlite3.connect(path)
    facts: dict[str, Any] = {}
    for table in ("tasks", "archived_tasks", "task_shards", "archived_task_shards"):
        indexes = {}
        for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            columns = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
            key = name if origin == "c" else f"<{origin}>"
            indexes[key] = (unique, origin, partial, columns)
        facts[table] = {
            "columns": conn.execute(f"PRAGMA table_info({table})").fetchall(),
            "indexes": indexes,
            "foreign_keys": [r[2:] for r in conn.execute(f"PRAGMA foreign_key_list({table})")],
        }
    conn.close()
    return facts


def reference_open_and_use(path: Path, task_id: str) -> dict[str, Any]:
    """Do what the reference store does on open and on save/get, with plain sqlite3.

    It refuses a foreign application_id, runs only its migrations above
    ``user_version`` (it knows 1..5: none for our files, at 6 and later), then upserts
    and reads a row.
    """
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= REFERENCE_VERSION  # none to run
    with conn:
        conn.execute(
            "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time,"
            " result_json, metadata_json, error_message) VALUES (?, 'ref', 'running', 7,"
            " '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00', NULL, '{}', NULL)"
            " ON CONFLICT(task_id) DO UPDATE SET status = excluded.status",
            (task_id,),
        )
        conn.execute(
            "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend,"
            " circuit_count, sub_index_offset, status, result_json, error_message,"
            " submit_time, update_time) VALUES (?, 0, 'ref-p', 'ref', 1, 0, 'running', NULL,"
            " NULL, 'x', 'x')",
            (task_id,),
        )
    row = dict(conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone())
    conn.close()
    return row


def fail_v4_midway(monkeypatch: Any) -> None:
    """Make revision 0004 fail after its two CREATE TABLEs (at its last index)."""
    from alembic import op

    real = op.create_index

    def failing(name: str, *args: object, **kwargs: object) -> object:
        if name == "archived_task_shards_platform_idx":
            raise RuntimeError("injected failure in v4, after two CREATE TABLEs")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(op, "create_index", failing)
