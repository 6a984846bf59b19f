"""The README's FastAPI pattern (issue 26 part 6), served by a real uvicorn on every
engine: the code block of "With FastAPI" is run as it is written. A lifespan opens the
store and closes it at shutdown; a dependency hands it to the routes; a route joins
the store's calls to its request-scoped Session with ``store.using``, so the job row,
the task's status and its archiving commit or roll back together."""

from __future__ import annotations

import re
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_server import served
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.connections import HeldConnection

ROOT = Path(__file__).resolve().parents[2]
MODULE = "uqt_readme_fastapi"
pytestmark = pytest.mark.one_path  # the served store is the app's own, not the fixture's


def readme_fastapi_app() -> types.ModuleType:
    """The first Python block of the README's "With FastAPI", run as a module of its own
    (registered while the test runs: SQLAlchemy resolves ``Mapped[...]`` through it)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## With FastAPI\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    exec(compile(match.group(1), "README.md (With FastAPI)", "exec"), module.__dict__)
    return module


@pytest.fixture
def readme_app(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The README's app on the store's database, with its ``jobs`` table."""
    monkeypatch.setenv("UNIQC_STORE_URL", store.url.render_as_string(hide_password=False))
    module = readme_fastapi_app()
    module.Base.metadata.create_all(store.engine)
    try:
        yield module
    finally:
        module.Base.metadata.drop_all(store.engine)
        sys.modules.pop(MODULE, None)


def add_job(store: TaskStore, job_id: str, task_id: str) -> None:
    with store.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, task_id, state) VALUES (%s, %s, 'open')"
            if store.dialect != "sqlite"
            else "INSERT INTO jobs (id, task_id, state) VALUES (?, ?, 'open')",
            (job_id, task_id),
        )


def job_state(store: TaskStore, job_id: str) -> str:
    with store.reading() as conn:
        rows = conn.exec_driver_sql("SELECT id, state FROM jobs").all()
    return dict((str(r[0]), str(r[1])) for r in rows)[job_id]


def test_the_readme_pattern_under_uvicorn(store: TaskStore, readme_app: types.ModuleType) -> None:
    app = readme_app.app
    store.save(TaskInfo("uqt_job_ok", "b", status="running"))
    store.save(TaskInfo("uqt_job_twice", "b", status="running"))
    store.archive_task("uqt_job_twice")
    store.save(TaskInfo("uqt_job_twice", "b", status="running"))  # an archived copy exists
    add_job(store, "job-ok", "uqt_job_ok")
    add_job(store, "job-gone", "uqt_no_such_task")
    add_job(store, "job-twice", "uqt_job_twice")
    with served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        served_store = app.state.store
        assert client.get("/tasks/uqt_job_ok").json() == {
            "task_id": "uqt_job_ok",
            "status": "running",
        }
        assert client.get("/tasks/uqt_nothing").status_code == 404
        assert client.post("/jobs/nobody/finish").status_code == 404

        done = client.post("/jobs/job-ok/finish")
        assert done.status_code == 200, done.text
        assert done.json() == {"job": "job-ok", "state": "done"}
        # committed before the response: all three are there when the client has it
        assert job_state(store, "job-ok") == "done"
        archived = store.get_archived("uqt_job_ok")
        assert archived is not None and archived.status == "success"
        assert store.get("uqt_job_ok") is None

        gone = client.post("/jobs/job-gone/finish")
        assert gone.status_code == 409 and "not live" in gone.json()["detail"]
        assert job_state(store, "job-gone") == "open"

        # archive_task fails after modify wrote: the status and the job roll back with it
        twice = client.post("/jobs/job-twice/finish")
        assert twice.status_code == 409 and "already in the archive" in twice.json()["detail"]
        assert job_state(store, "job-twice") == "open"
        live = store.get("uqt_job_twice")
        assert live is not None and live.status == "running"
    _closed_at_shutdown(served_store)


def test_concurrent_requests_each_commit_their_own_unit(
    store: TaskStore, readme_app: types.ModuleType
) -> None:
    """16 jobs finished by 8 clients at once: every request is 200 (on SQLite the
    Sessions' BEGIN IMMEDIATE queue on the busy timeout) and every unit is whole."""
    ids = [f"uqt_many_{i:02}" for i in range(16)]
    store.save_many([TaskInfo(task_id, "b", status="running") for task_id in ids])
    for task_id in ids:
        add_job(store, f"job-{task_id}", task_id)
    statuses: list[int] = []
    with served(readme_app.app) as base:

        def finish(chunk: list[str]) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                for task_id in chunk:
                    statuses.append(client.post(f"/jobs/job-{task_id}/finish").status_code)

        threads = [threading.Thread(target=finish, args=(ids[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted(statuses) == [200] * len(ids)
    assert store.count() == 0 and store.count_archived(status="success") == len(ids)
    assert {job_state(store, f"job-{task_id}") for task_id in ids} == {"done"}


def _closed_at_shutdown(served_store: TaskStore) -> None:
    """The lifespan closed the app's store: no held SQLite connection, an emptied pool."""
    source = served_store._executor.source
    if isinstance(source, HeldConnection):
        assert source.peek() is None
    else:
        assert served_store.engine.pool.checkedin() == 0
