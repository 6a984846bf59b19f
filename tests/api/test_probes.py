"""The probes (``/api/live``, ``/api/ready``) and ``/metrics``, over HTTP from a real uvicorn
server on every engine: without and with a token, for the pod IP Kubernetes sends as the
Host, with the schema behind head, with the database not answering (a frozen private
server; SQLite's connection held past the bound), two apps in one process, and
``uniqc-store serve``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import URL

from tests.conftest import scratch_url
from tests.http_server import SharedServer, http_client, served, start_serve, stop_serve
from tests.private_servers import PrivateServer, private_mariadb, private_postgresql
from tests.race_tools import unit_held_elsewhere
from uniqc_store import TaskInfo, TaskStore, Timeouts
from uniqc_store.api.app import PROBE_PATHS, create_app
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import downgrade, upgrade
from uniqc_store.records import CURRENT_SCHEMA_VERSION

TOKEN = "t0ken-for-the-probes"
POD_IP_HOSTS = ["10.0.0.7:8000", "[fd00::7]:8000", "10.0.0.7"]
READY_S = 1.0
#: What a bound may overrun by on this 2-core machine (scheduling, the server's threads).
SLACK_S = 2.5


@pytest.fixture
def api_store(module_url: URL) -> Iterator[TaskStore]:
    """A store at head on each engine (its own engine, so its figures start at zero)."""
    task_store = TaskStore(url=module_url, auto_migrate=True)
    try:
        yield task_store
    finally:
        task_store.clear_all()
        task_store.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text answer: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- the probes -------------------------------------------------------------------


def test_the_probes_answer_without_the_token_for_any_host(
    api_server: SharedServer, api_store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", TOKEN)
    assert {"/api/live", "/api/ready", "/api/health"} <= PROBE_PATHS
    with api_server.client(create_app(api_store)) as client:
        for host in [None, *POD_IP_HOSTS]:
            headers = {"Host": host} if host else {}
            live = client.get("/api/live", headers=headers)
            assert (live.status_code, live.json()) == (200, {"status": "alive"})
            ready = client.get("/api/ready", headers=headers)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ready",
                "schema_version": CURRENT_SCHEMA_VERSION,
                "dialect": api_store.dialect,
            }
        # the rest of the API still wants both the token and a served Host
        assert client.get("/api/version").status_code == 401
        assert client.get("/metrics").status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            client.get("/metrics", headers={**bearer, "Host": "10.0.0.7:8000"}).status_code == 400
        )
        assert client.get("/metrics", headers=bearer).status_code == 200


def test_the_probes_refuse_unknown_query_parameters(
    api_server: SharedServer, api_store: TaskStore
) -> None:
    with api_server.client(create_app(api_store)) as client:
        assert client.get("/api/live", params={"x": "1"}).status_code == 422
        assert client.get("/api/ready", params={"x": "1"}).status_code == 422


def test_ready_is_503_while_the_schema_is_behind_head(fresh_url: URL) -> None:
    TaskStore(url=fresh_url, auto_migrate=True).close()
    store = TaskStore(url=fresh_url)
    engine = create_store_engine(fresh_url)
    try:
        with http_client(create_app(store)) as client:
            assert client.get("/api/ready").status_code == 200
            downgrade(engine, "0005")
            ready = client.get("/api/ready")
            assert ready.status_code == 503
            assert "schema version 5" in ready.json()["detail"]
            assert "uniqc-store upgrade" in ready.json()["detail"]
            assert client.get("/api/live").status_code == 200
            upgrade(engine)
            assert client.get("/api/ready").status_code == 200
    finally:
        engine.dispose()
        store.close()


def test_ready_refuses_a_bound_that_cannot_be_one(api_store: TaskStore) -> None:
    with pytest.raises(ValueError, match="at most 60"):
        create_app(api_store, ready_seconds=0)
    with pytest.raises(ValueError, match="at most 60"):
        create_app(api_store, ready_seconds=float("nan"))
    with pytest.raises(TypeError, match="number of seconds"):
        create_app(api_store, ready_seconds="2")  # type: ignore[arg-type]


def test_ready_answers_503_within_its_bound_when_sqlite_does_not_answer(tmp_path: Path) -> None:
    store = TaskStore(tmp_path, timeouts=Timeouts(lock_wait_seconds=8, call_seconds=10))
    try:
        with http_client(create_app(store, ready_seconds=READY_S)) as client:
            with unit_held_elsewhere(store.transaction):
                for _ in range(2):  # the second probe waits for the same check
                    started = time.monotonic()
                    ready = client.get("/api/ready")
                    assert time.monotonic() - started <= READY_S + SLACK_S
                    assert ready.status_code == 503
                    assert "did not answer within 1 s" in ready.json()["detail"]
                assert client.get("/api/live").status_code == 200
                assert client.get("/metrics").status_code == 200
            deadline = time.monotonic() + 30  # the held check ends, a new one passes
            while client.get("/api/ready").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        waits = store.metrics
        assert waits.busy_waits >= 1 and waits.busy_wait_seconds > 0
    finally:
        store.close()


@pytest.fixture(params=["postgresql", "mysql"])
def frozen_server(request: pytest.FixtureRequest) -> Iterator[PrivateServer]:
    starter = private_postgresql if request.param == "postgresql" else private_mariadb
    with starter() as server:
        yield server


def test_ready_answers_503_within_its_bound_when_the_server_is_stopped(
    frozen_server: PrivateServer,
) -> None:
    TaskStore(url=frozen_server.url, auto_migrate=True).close()
    short = Timeouts(connect_seconds=2, lock_wait_seconds=2, call_seconds=4, bulk_seconds=5)
    store = TaskStore(url=frozen_server.url, timeouts=short)
    try:
        with http_client(create_app(store, ready_seconds=READY_S)) as client:
            assert client.get("/api/ready").status_code == 200
            frozen_server.stop()
            try:
                started = time.monotonic()
                ready = client.get("/api/ready")
                assert time.monotonic() - started <= READY_S + SLACK_S
                assert ready.status_code == 503
                assert "did not answer within 1 s" in ready.json()["detail"]
                assert client.get("/api/live").status_code == 200
                started = time.monotonic()
                assert client.get("/metrics").status_code == 200  # in memory: no database
                assert time.monotonic() - started <= SLACK_S
            finally:
                frozen_server.resume()
            deadline = time.monotonic() + 30
            while client.get("/api/ready").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        store.close()


# -- /metrics ---------------------------------------------------------------------


def test_metrics_count_the_calls_and_errors_made_through_the_api(
    api_server: SharedServer, api_store: TaskStore
) -> None:
    api_store.save(TaskInfo(task_id="uqt_metrics", backend="dummy"))
    with api_server.client(create_app(api_store)) as client:
        before = _samples(client.get("/metrics").text)
        assert client.get("/api/tasks/uqt_metrics").status_code == 200
        assert client.get("/api/tasks/uqt_none").status_code == 404
        assert client.post("/api/tasks/uqt_metrics/archive").status_code == 200
        api_store.save(TaskInfo(task_id="uqt_metrics", backend="dummy"))
        assert client.post("/api/tasks/uqt_metrics/archive").status_code == 409
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    after = _samples(answer.text)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("uniqc_store_calls_total", operation="get") == 2
    assert delta("uniqc_store_calls_total", operation="archive_task") == 2
    assert delta("uniqc_store_calls_total", operation="save") == 1
    assert (
        delta("uniqc_store_errors_total", operation="archive_task", error="TaskConflictError") == 1
    )
    assert delta("uniqc_store_errors_total", operation="get", error="TaskConflictError") == 0
    assert delta("uniqc_store_call_duration_seconds_count", operation="get") == 2
    assert delta("uniqc_store_call_duration_seconds_bucket", operation="get", le="+Inf") == 2
    assert delta("uniqc_store_call_duration_seconds_sum", operation="get") > 0
    # the text says what the library's snapshot says
    snapshot = api_store.metrics.operations["archive_task"]
    assert _value(after, "uniqc_store_calls_total", operation="archive_task") == snapshot.calls
    for reason in ("conflict", "dropped", "parent_moved"):
        assert ("uniqc_store_retries_total", (("reason", reason),)) in after
    assert ("uniqc_store_busy_waits_total", ()) in after
    pooled = ("uniqc_store_pool_checked_out", ()) in after
    assert pooled == (api_store.dialect != "sqlite")
    if pooled:
        assert _value(after, "uniqc_store_pool_size") == api_store.engine.pool.size()  # type: ignore[attr-defined]


def test_metrics_speak_openmetrics_when_asked(
    api_server: SharedServer, api_store: TaskStore
) -> None:
    with api_server.client(create_app(api_store)) as client:
        answer = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


def test_metrics_follow_the_host_rule(api_server: SharedServer, api_store: TaskStore) -> None:
    with api_server.client(create_app(api_store, allowed_hosts=["10.0.0.7", "fd00::7"])) as client:
        for host in POD_IP_HOSTS:
            assert client.get("/metrics", headers={"Host": host}).status_code == 200
        refused = client.get("/metrics", headers={"Host": "10.0.0.8:8000"})
        assert refused.status_code == 400
        assert "allowed-host" in refused.json()["detail"]


def test_two_apps_in_one_process_keep_their_own_figures(tmp_path: Path, module_url: URL) -> None:
    with scratch_url("sqlite", tmp_path) as other_url:
        first = TaskStore(url=module_url, auto_migrate=True)
        second = TaskStore(url=other_url)
        try:
            first_app, second_app = create_app(first), create_app(second)
            with served(first_app) as one, served(second_app) as two:
                for _ in range(3):
                    assert httpx.get(f"{one}/api/tasks/uqt_none").status_code == 404
                assert httpx.get(f"{two}/api/tasks/uqt_none").status_code == 404
                first_text = httpx.get(f"{one}/metrics").text
                second_text = httpx.get(f"{two}/metrics").text
        finally:
            first.close()
            second.close()
    assert _value(_samples(first_text), "uniqc_store_calls_total", operation="get") == 3
    assert _value(_samples(second_text), "uniqc_store_calls_total", operation="get") == 1
    assert first_app.state.metrics_registry is not second_app.state.metrics_registry


def test_serve_has_the_probes_and_metrics(tmp_path: Path) -> None:
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "tasks.sqlite"))
    TaskStore(url=url).close()
    process, base = start_serve(url, token=TOKEN)
    try:
        assert httpx.get(f"{base}/api/live").status_code == 200
        assert httpx.get(f"{base}/api/ready").json()["status"] == "ready"
        assert httpx.get(f"{base}/metrics").status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.get(f"{base}/metrics", headers=bearer)
        assert (
            _value(_samples(answer.text), "uniqc_store_calls_total", operation="schema_version")
            >= 1
        )
    finally:
        stop_serve(process)
