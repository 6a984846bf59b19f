"""What the benchmarks compare against.

``ReferenceLikeStore`` works the way the reference store does: a new
``sqlite3`` connection for every call, switched to WAL with foreign keys on,
a per-instance lock, the same statements, commit and close. ``rekey_row_by_row``
is the reference's v5 algorithm (read every row, then insert and delete one
row at a time). ``RawFloor`` is plain ``sqlite3`` on one open connection: the
floor nobody can beat by much; ``rekey_floor`` is the same for v5.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TASK_UPSERT = (
    "INSERT INTO tasks (task_id, backend, status, shots, submit_time, update_time, result_json,"
    " metadata_json, error_message) VALUES (:task_id, :backend, :status, :shots, :submit_time,"
    " :update_time, :result_json, :metadata_json, :error_message) ON CONFLICT(task_id) DO UPDATE"
    " SET backend = excluded.backend, status = excluded.status, shots = excluded.shots,"
    " update_time = excluded.update_time, result_json = excluded.result_json,"
    " metadata_json = excluded.metadata_json, error_message = excluded.error_message"
)
SHARD_UPSERT = (
    "INSERT INTO task_shards (uniqc_task_id, shard_index, platform_task_id, backend,"
    " circuit_count, sub_index_offset, status, result_json, error_message, submit_time,"
    " update_time) VALUES (:uniqc_task_id, :shard_index, :platform_task_id, :backend,"
    " :circuit_count, :sub_index_offset, :status, :result_json, :error_message, :submit_time,"
    " :update_time) ON CONFLICT(uniqc_task_id, shard_index) DO UPDATE SET"
    " platform_task_id = excluded.platform_task_id, backend = excluded.backend,"
    " circuit_count = excluded.circuit_count, sub_index_offset = excluded.sub_index_offset,"
    " status = excluded.status, result_json = excluded.result_json,"
    " error_message = excluded.error_message, update_time = excluded.update_time"
)
TASK_COLUMNS = (
    "task_id, backend, status, shots, submit_time, update_time, result_json, "
    "metadata_json, error_message"
)
SHARD_COLUMNS = (
    "uniqc_task_id, shard_index, platform_task_id, backend, circuit_count, "
    "sub_index_offset, status, result_json, error_message, submit_time, update_time"
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class ReferenceLikeStore:
    """A connection per call with the reference's PRAGMAs and SQL (the baseline)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.db_path))
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            try:
                yield conn
                conn.commit()
            finally:
                conn.close()

    def save(self, task: dict[str, Any]) -> None:
        params = {
            **task,
            "update_time": now(),
            "result_json": json.dumps(task["result"]),
            "metadata_json": json.dumps(task["metadata"], ensure_ascii=False),
        }
        with self._tx() as conn:
            conn.execute(TASK_UPSERT, params)

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return self._decode(row) if row is not None else None

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        record = dict(row)
        record["result"] = json.loads(record.pop("result_json") or "null")
        record["metadata"] = json.loads(record.pop("metadata_json") or "{}")
        return record

    def list(self, status: str, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tasks WHERE status = ? ORDER BY submit_time DESC, rowid DESC LIMIT ?"
        with self._tx() as conn:
            rows = conn.execute(sql, (status, limit)).fetchall()
        return [self._decode(r) for r in rows]

    def count(self, backend: str) -> int:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT COUNT(*) AS c FROM tasks WHERE backend = ?", (backend,)
            ).fetchone()
        return int(row["c"])

    def save_shard(self, shard: dict[str, Any]) -> None:
        params = {**shard, "update_time": now(), "result_json": json.dumps(shard["result"])}
        with self._tx() as conn:
            conn.execute(SHARD_UPSERT, params)

    def get_shards(self, task_id: str) -> builtins.list[dict[str, Any]]:
        sql = "SELECT * FROM task_shards WHERE uniqc_task_id = ? ORDER BY shard_index ASC"
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(sql, (task_id,)).fetchall()]

    def find_uniqc_id_by_platform_id(self, platform_task_id: str) -> str | None:
        sql = "SELECT * FROM task_shards WHERE platform_task_id = ? LIMIT 1"
        with self._tx() as conn:
            row = conn.execute(sql, (platform_task_id,)).fetchone()
        return row["uniqc_task_id"] if row is not None else None

    def archive_task(self, task_id: str) -> bool:
        """Read the task and its shards, write them to the archive, delete the task."""
        stamp = now()
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None:
                return False
            conn.execute(
                f"INSERT INTO archived_tasks ({TASK_COLUMNS}, archived_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*tuple(row), stamp),
            )
            for shard in conn.execute(
                "SELECT * FROM task_shards WHERE uniqc_task_id = ?", (task_id,)
            ).fetchall():
                conn.execute(
                    f"INSERT INTO archived_task_shards ({SHARD_COLUMNS}, archived_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*tuple(shard), stamp),
                )
            conn.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
        return True


def rekey_row_by_row(db_path: Path) -> None:
    """The reference's v5: fetch all legacy rows, then insert/insert/delete per row."""
    conn = sqlite3.connect(str(db_path))
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    with conn:
        for table, shard_table, extra in (
            ("tasks", "task_shards", ()),
            ("archived_tasks", "archived_task_shards", ("archived_at",)),
        ):
            for row in conn.execute(f"SELECT * FROM {table}").fetchall():
                old_id = row["task_id"]
                if old_id.startswith("uqt_"):
                    continue
                new_id = f"uqt_{uuid.uuid4().hex}"
                try:
                    metadata = json.loads(row["metadata_json"]) if row["metadata_json"] else {}
                except ValueError:
                    metadata = {}
                if not isinstance(metadata, dict):
                    metadata = {"legacy_metadata_raw": metadata}
                metadata["legacy_platform_id"] = old_id
                values = dict(row) | {"task_id": new_id, "metadata_json": json.dumps(metadata)}
                names = ", ".join(values)
                conn.execute(
                    f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})",
                    tuple(values.values()),
                )
                shard = {
                    "uniqc_task_id": new_id,
                    "shard_index": 0,
                    "platform_task_id": old_id,
                    "backend": row["backend"],
                    "circuit_count": 1,
                    "sub_index_offset": 0,
                    "status": row["status"],
                    "result_json": row["result_json"],
                    "error_message": row["error_message"],
                    "submit_time": row["submit_time"],
                    "update_time": row["update_time"],
                } | {k: row[k] for k in extra}
                marks = ", ".join("?" * len(shard))
                conn.execute(
                    f"INSERT INTO {shard_table} ({', '.join(shard)}) VALUES ({marks})",
                    tuple(shard.values()),
                )
                conn.execute(f"DELETE FROM {table} WHERE task_id = ?", (old_id,))
    conn.close()


# a uuid4 in hex from four random draws: 12 digits, '4', 3, a variant digit, 15
FLOOR_NEW_ID = (
    "'uqt_' || lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)"
    " || substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))"
)
FLOOR_METADATA = (
    "json_set(CASE json_type(metadata_json) WHEN 'object' THEN metadata_json"
    " ELSE json_object('legacy_metadata_raw', json(metadata_json)) END,"
    " '$.legacy_platform_id', task_id)"
)


def rekey_floor(db_path: Path) -> None:
    """The least SQLite can do for v5: per table, one UPDATE giving every row its
    ``uqt_`` id and metadata, one INSERT ... SELECT of the shards, one transaction.

    No batching (one statement over the whole table), no id map, no checks; it is
    only right for files like the benchmark's, where every row is legacy, every
    metadata is valid JSON and no shard exists yet.
    """
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    for table, shard_table, extra in (
        ("tasks", "task_shards", ""),
        ("archived_tasks", "archived_task_shards", ", archived_at"),
    ):
        conn.execute(
            f"UPDATE {table} SET task_id = {FLOOR_NEW_ID}, metadata_json = {FLOOR_METADATA}"
        )
        conn.execute(
            f"INSERT INTO {shard_table} ({SHARD_COLUMNS}{extra}) SELECT task_id, 0,"
            " json_extract(metadata_json, '$.legacy_platform_id'), backend, 1, 0, status,"
            f" result_json, error_message, submit_time, update_time{extra} FROM {table}"
        )
    conn.execute("COMMIT")
    conn.close()


class RawFloor:
    """Plain sqlite3 on one open connection: save (commit each), get, bulk insert."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(str(db_path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")

    def save(self, params: dict[str, Any]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(TASK_UPSERT, params)
        self.conn.execute("COMMIT")

    def get(self, task_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(
            "SELECT * FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        return row

    def insert_many(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(TASK_UPSERT, rows)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
