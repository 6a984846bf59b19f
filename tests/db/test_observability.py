"""Every statement the store runs is visible to SQLAlchemy: echo, cursor events, tracing.

On SQLite a store may skip SQLAlchemy's execution machinery while nobody
watches (``uniqc_store/db/direct.py``); as soon as a listener, echo or a tracer is
there, every call goes through it. These tests watch each kind of call.
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event

from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.db.direct import DriverStatements
from uniqc_store.repository.statements import Statements

pytestmark = pytest.mark.one_path  # these watch the engine themselves


CALLS: dict[str, tuple[Callable[[TaskStore], Any], str]] = {
    "save": (lambda s: s.save(TaskInfo(task_id="uqt_2", backend="b")), "INSERT INTO tasks"),
    "get": (lambda s: s.get("uqt_1"), "FROM tasks"),
    "list": (lambda s: s.list(status="success", limit=5), "FROM tasks"),
    "count": (lambda s: s.count(backend="b"), "count"),  # count(*), or task_counts on SQLite
    "save_shard": (lambda s: s.save_shard(TaskShard("uqt_1", 1, "p1", "b")), "task_shards"),
    "get_shards": (lambda s: s.get_shards("uqt_1"), "FROM task_shards"),
    "find_uniqc_id": (lambda s: s.find_uniqc_id_by_platform_id("p0"), "task_shards"),
    "modify": (lambda s: s.modify("uqt_1", lambda info: None), "UPDATE tasks"),
    "archive_task": (lambda s: s.archive_task("uqt_1"), "INSERT INTO archived_tasks"),
    "restore_task": (lambda s: s.restore_task("uqt_0"), "INSERT INTO tasks"),
    "delete": (lambda s: s.delete("uqt_1"), "DELETE FROM tasks"),
    "archive_expired": (lambda s: s.archive_expired(0), "archived_tasks"),
}


@pytest.fixture
def filled(store: TaskStore) -> Iterator[TaskStore]:
    store.save(TaskInfo(task_id="uqt_0", backend="b", status="success"))
    store.archive_task("uqt_0")
    store.save(TaskInfo(task_id="uqt_1", backend="b", status="success"))
    store.save_shard(TaskShard("uqt_1", 0, "p0", "b"))
    yield store


class Seen:
    """Statements seen by a ``before_cursor_execute`` listener on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __enter__(self) -> Seen:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_cursor_listeners_see_every_call(filled: TaskStore, call: str) -> None:
    run, expected = CALLS[call]
    with Seen(filled.engine) as seen:
        run(filled)
    assert any(expected in statement for statement in seen.statements), seen.statements


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_echo_logs_every_call(
    filled: TaskStore, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    run, expected = CALLS[call]
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        run(filled)
    assert any(expected in record.getMessage() for record in caplog.records)


def test_open_telemetry_traces_every_call(filled: TaskStore) -> None:
    pytest.importorskip("opentelemetry.instrumentation.sqlalchemy")
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = SQLAlchemyInstrumentor()
    # 0.66b1 declares sqlalchemy<2.1 and would otherwise do nothing on 2.1 (PITFALLS.md)
    instrumentor.instrument(engine=filled.engine, tracer_provider=provider, skip_dep_check=True)
    try:
        for call, (run, _expected) in CALLS.items():
            exporter.clear()
            run(filled)
            assert exporter.get_finished_spans(), f"{call} made no span"
    finally:
        instrumentor.uninstrument()


INSTRUMENTED_AFTER_IMPORT = """
import json, sys
import uniqc_store  # imported first, as an application does before it sets up tracing
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
# no engine= : it wraps sqlalchemy.create_engine for every engine made from now on
SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
store = uniqc_store.TaskStore(url=sys.argv[1], auto_migrate=True)
exporter.clear()
store.save(uniqc_store.TaskInfo(task_id="uqt_traced", backend="b"))
assert store.get("uqt_traced") is not None
store.close()
spans = exporter.get_finished_spans()
print(json.dumps([s.attributes.get("db.statement") or s.name for s in spans]))
"""


def test_tracing_set_up_after_import_sees_the_store(store: TaskStore) -> None:
    """``SQLAlchemyInstrumentor().instrument()`` after ``import uniqc_store`` wraps
    ``sqlalchemy.create_engine``; the store's engines are made through that name when a
    store opens, so they are traced (a fresh process: instrumentation is process-wide)."""
    pytest.importorskip("opentelemetry.instrumentation.sqlalchemy")
    url = store.url.render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-c", INSTRUMENTED_AFTER_IMPORT, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    statements = json.loads(result.stdout.splitlines()[-1])
    assert any("INSERT INTO tasks" in s for s in statements), statements
    assert any("FROM tasks" in s and s.lstrip().startswith("SELECT") for s in statements)


def test_the_direct_path_runs_the_sql_sqlalchemy_runs(filled: TaskStore, backend: str) -> None:
    """What the direct path sends for each prepared statement is exactly the text a
    listener sees SQLAlchemy send for the same call."""
    if backend != "sqlite":
        pytest.skip("servers always run statements through SQLAlchemy's execution")
    drivers = DriverStatements(filled.engine)
    sql = Statements.for_dialect("sqlite")
    with Seen(filled.engine) as seen:
        filled.get("uqt_1")
        filled.get_shards("uqt_1")
        filled.save(TaskInfo(task_id="uqt_3", backend="b"))
    for stmt in (sql.get_task, sql.get_shards, sql.upsert_task):
        form = drivers.get(stmt)
        assert form is not None and form.sql in seen.statements


def test_memory_stays_flat_over_thousands_of_calls(tmp_path: Any) -> None:
    """No cache grows with the number of calls, whatever their shape."""
    with TaskStore(tmp_path) as store:
        store.save(TaskInfo(task_id="uqt_1", backend="b", status="success"))

        def every_shape(i: int) -> None:
            store.get(f"uqt_{i}")
            store.list(status="success", backend=f"b{i % 7}", limit=i % 5 + 1, offset=i % 3)
            store.count(backend=f"b{i}")
            store.clear_completed([("failed", "cancelled")[i % 2]])
            store.archive_expired(1e5 + i)
            store.find_uniqc_id_by_platform_id(f"p{i}", backend="b")

        for i in range(300):  # warm every cache up
            every_shape(i)
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.take_snapshot()
            for i in range(3000):
                every_shape(i)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes more after 3,000 rounds"
