"""The REST API over HTTP from a real uvicorn server (every engine): routes and
shapes, bearer tokens, redaction and the OpenAPI document."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from sqlalchemy import text, update

from tests.http_server import SharedServer, served
from uniqc_store import (
    DatabaseUnavailableError,
    TaskConflictError,
    TaskInfo,
    TaskShard,
    TaskStore,
)
from uniqc_store.api.app import PROBE_PATHS, REDACTED, create_app, redact_sensitive
from uniqc_store.records import CURRENT_SCHEMA_VERSION, MAX_JSON_DEPTH, MAX_KEY_LENGTH
from uniqc_store.redaction import TOO_DEEP
from uniqc_store.schema.tables import archived_tasks, tasks

SECRET_METADATA = {
    "api_key": "k-123",
    "QUARK_API_KEY": "q-456",
    "apiKey": "camel",
    "monkey": "banana",
    "keyboard": "qwerty",
    "nested": [{"proxy": {"http": "http://u:p@h"}, "auth_token": "t", "tokens_left": 3}],
    "password": "",
    "secret": None,
    "client_credentials": "c",
    "author": "ada",
}


def test_redact_sensitive() -> None:
    out = redact_sensitive(SECRET_METADATA)
    assert out["api_key"] == out["QUARK_API_KEY"] == out["apiKey"] == REDACTED
    assert (out["monkey"], out["keyboard"], out["author"]) == ("banana", "qwerty", "ada")
    assert out["nested"][0]["proxy"] == REDACTED and out["nested"][0]["auth_token"] == REDACTED
    assert out["nested"][0]["tokens_left"] == 3  # a count, not a credential
    assert out["password"] == "" and out["secret"] is None
    assert out["client_credentials"] == REDACTED
    assert SECRET_METADATA["api_key"] == "k-123"  # the input is not modified


@pytest.fixture
def client(store: TaskStore, api_server: SharedServer) -> Iterator[httpx.Client]:
    with api_server.client(create_app(store)) as http:
        yield http


def seed(store: TaskStore) -> None:
    old = (datetime.now(timezone.utc) - timedelta(hours=100)).isoformat()
    for i, status in enumerate(["pending", "running", "success", "failed", "success"]):
        store.save(
            TaskInfo(
                task_id=f"uqt_{i}",
                backend="b" if i % 2 else "a",
                status=status,
                submit_time=f"2024-01-0{i + 1}T00:00:00+00:00",
                result={"counts": {"0": i}, "token": "s3cret"},
                metadata=SECRET_METADATA,
                error_message="upstream: https://ada:pw0rd@quark.example/x failed",
            )
        )
    store.save_shard(
        TaskShard("uqt_2", 0, "plat-2", "a", result={"big": "x"}, error_message="token=abc")
    )
    with store.engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == "uqt_4").values(update_time=old))


def test_task_routes(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    body = client.get("/api/tasks", params={"limit": 2, "offset": 1}).json()
    assert [t["task_id"] for t in body["tasks"]] == ["uqt_3", "uqt_2"]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)
    assert body["tasks"][0]["has_result"] is True
    assert body["tasks"][0]["metadata"]["api_key"] == REDACTED
    assert client.get("/api/tasks", params={"status": "success"}).json()["total"] == 2
    assert client.get("/api/tasks/counts").json() == {
        "pending": 1,
        "running": 1,
        "success": 2,
        "failed": 1,
        "cancelled": 0,
        "total": 5,
    }
    assert body["tasks"][0]["error_message"] == "upstream: https://ada:***@quark.example/x failed"
    detail = client.get("/api/tasks/uqt_2").json()
    assert detail["result"] == {"counts": {"0": 2}, "token": REDACTED}
    assert detail["metadata"]["nested"][0]["proxy"] == REDACTED
    shards = client.get("/api/tasks/uqt_2/shards").json()
    assert shards["shard_count"] == 1 and "result" not in shards["shards"][0]
    assert shards["shards"][0]["platform_task_id"] == "plat-2"
    assert shards["shards"][0]["error_message"] == "token=***"
    assert store.get("uqt_2").metadata["api_key"] == "k-123"  # type: ignore[union-attr]

    missing = client.get("/api/tasks/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert client.get("/api/tasks/nope/shards").status_code == 404
    assert client.delete("/api/tasks/uqt_0").json() == {"deleted": "uqt_0"}
    assert client.delete("/api/tasks/uqt_0").status_code == 404
    bulk = client.post("/api/tasks/bulk-delete", json={"task_ids": ["uqt_1", "nope"]}).json()
    assert bulk == {"deleted": ["uqt_1"], "missing": ["nope"], "count": 1}


def test_archive_routes(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    expired = client.post("/api/tasks/archive-expired", params={"hours": 72}).json()
    assert expired["archived"] == ["uqt_4"] and sorted(expired["skipped_running"]) == [
        "uqt_0",
        "uqt_1",
    ]
    assert client.post("/api/tasks/uqt_2/archive").json() == {"archived": "uqt_2"}
    assert client.post("/api/tasks/uqt_2/archive").status_code == 404
    bulk = client.post("/api/tasks/bulk-archive", json={"task_ids": ["uqt_3", "nope"]}).json()
    assert (bulk["archived"], bulk["missing"], bulk["count"]) == (["uqt_3"], ["nope"], 1)
    listed = client.get("/api/archive", params={"backend": "a"}).json()
    assert {t["task_id"] for t in listed["tasks"]} == {"uqt_2", "uqt_4"} and listed["total"] == 2
    archived = client.get("/api/archive/uqt_2").json()
    assert archived["archived_at"] and archived["result"]["token"] == REDACTED
    assert client.get("/api/archive/nope").status_code == 404
    store.save(TaskInfo(task_id="uqt_2", backend="a"))
    conflict = client.post("/api/archive/restore/uqt_2")
    assert conflict.status_code == 409 and "live task" in conflict.json()["detail"]
    store.delete("uqt_2")
    assert client.post("/api/archive/restore/uqt_2").json() == {"restored": "uqt_2"}
    assert store.get_shards("uqt_2")[0].platform_task_id == "plat-2"
    assert client.delete("/api/archive/uqt_3").json() == {"deleted": "uqt_3"}
    assert client.delete("/api/archive/uqt_3").status_code == 404
    assert client.post("/api/archive/restore/uqt_3").status_code == 404


@pytest.mark.parametrize(
    "params",
    [{"limit": -1}, {"limit": 10**9}, {"offset": -5}, {"status": "done"}, {"limit": "x"}],
)
def test_bad_parameters_are_422(client: httpx.Client, params: dict[str, object]) -> None:
    assert client.get("/api/tasks", params=params).status_code == 422
    assert client.get("/api/archive", params=params).status_code == 422


def test_bad_bodies_are_422(client: httpx.Client) -> None:
    assert client.post("/api/tasks/bulk-delete", content=b"not json").status_code == 422
    assert client.post("/api/tasks/bulk-delete", json={"task_ids": "x"}).status_code == 422
    assert client.post("/api/tasks/archive-expired", params={"hours": -1}).status_code == 422


def test_openapi_document(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        "/api/tasks": {"get"},
        "/api/tasks/counts": {"get"},
        "/api/tasks/{task_id}": {"get", "delete"},
        "/api/tasks/{task_id}/shards": {"get"},
        "/api/tasks/bulk-delete": {"post"},
        "/api/tasks/bulk-archive": {"post"},
        "/api/tasks/archive-expired": {"post"},
        "/api/tasks/{task_id}/archive": {"post"},
        "/api/archive": {"get"},
        "/api/archive/{task_id}": {"get", "delete"},
        "/api/archive/restore/{task_id}": {"post"},
        "/api/archive/purge": {"post"},
        "/api/health": {"get"},
        "/api/live": {"get"},
        "/api/ready": {"get"},
        "/api/version": {"get"},
        "/metrics": {"get"},
    }
    assert {path: set(ops) for path, ops in spec["paths"].items()} == expected
    limit = next(
        p for p in spec["paths"]["/api/tasks"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == 1000 and limit["schema"]["minimum"] == 0


@pytest.fixture
def live_server(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, TaskStore]]:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", "t0ken-for-tests")
    with served(create_app(store)) as base:
        yield base, store


def test_real_server_with_bearer_token(live_server: tuple[str, TaskStore]) -> None:
    base, store = live_server
    seed(store)
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/api/tasks").status_code == 401
        wrong = http.get("/api/tasks", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer t0ken-for-tests"}
        body = http.get("/api/tasks", headers=good).json()
        assert body["total"] == 5
        assert (
            http.get("/api/tasks/uqt_3", headers=good).json()["metadata"]["QUARK_API_KEY"]
            == REDACTED
        )
        assert http.post("/api/tasks/uqt_3/archive", headers=good).json() == {"archived": "uqt_3"}
        assert http.get("/openapi.json").status_code == 401


# -- no input gives a 500 ------------------------------------------------------

BAD_TEXT = ["a\x00b", "\ud800", "x\udfffy"]
PATH_ROUTES = [
    ("GET", "/api/tasks/{}"),
    ("GET", "/api/tasks/{}/shards"),
    ("DELETE", "/api/tasks/{}"),
    ("POST", "/api/tasks/{}/archive"),
    ("GET", "/api/archive/{}"),
    ("DELETE", "/api/archive/{}"),
    ("POST", "/api/archive/restore/{}"),
]


@pytest.mark.parametrize("text", BAD_TEXT, ids=["nul", "surrogate", "inner-surrogate"])
def test_nul_and_lone_surrogates_are_422_everywhere(client: httpx.Client, text: str) -> None:
    """In a URL a surrogate's bytes decode to U+FFFD (valid text); NUL is refused.
    In a JSON body ``\\ud800`` escapes do give lone surrogates: refused."""
    quoted = quote(text.encode("utf-8", "surrogatepass"), safe="")
    refused = "\x00" in text
    for method, path in PATH_ROUTES:
        response = client.request(method, path.format(quoted))
        assert response.status_code == (422 if refused else 404), (method, path, response.text)
    for path in ("/api/tasks", "/api/archive"):
        response = client.get(f"{path}?backend={quoted}")
        assert response.status_code == (422 if refused else 200)
    for route in ("bulk-delete", "bulk-archive"):
        body = json.dumps({"task_ids": ["uqt_ok", text]}).encode()  # \\u escapes: valid JSON
        response = client.post(
            f"/api/tasks/{route}", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == [
            "body",
            "task_ids",
        ]


def test_unknown_body_fields_are_422(client: httpx.Client) -> None:
    response = client.post("/api/tasks/bulk-delete", json={"task_ids": [], "force": True})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == [
        "body",
        "force",
    ]
    odd_key = b'{"task_ids": [], "\\ud800": 1}'
    response = client.post(
        "/api/tasks/bulk-archive", content=odd_key, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("hours", "status"), [("999999", 200), ("1000000", 422), ("1e300", 422), ("nan", 422)]
)
def test_archive_expired_bounds_match_the_store(
    client: httpx.Client, hours: str, status: int
) -> None:
    response = client.post("/api/tasks/archive-expired", params={"hours": hours})
    assert response.status_code == status, response.text


def test_method_not_allowed_names_every_method(client: httpx.Client) -> None:
    for path in ("/api/tasks/uqt_1", "/api/archive/uqt_1"):
        for method in ("OPTIONS", "PUT", "PATCH"):
            response = client.request(method, path)
            assert response.status_code == 405
            assert set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}
    # a literal path is its own resource, as in the OpenAPI document
    assert client.options("/api/tasks/bulk-delete").headers["allow"] == "POST"
    assert client.options("/api/tasks/counts").headers["allow"] == "GET"


def test_a_trailing_slash_is_a_404_not_a_redirect(client: httpx.Client) -> None:
    assert client.get("/api/tasks/uqt_1/", follow_redirects=False).status_code == 404


def test_results_too_deep_to_serve_are_refused_at_save(
    client: httpx.Client, store: TaskStore
) -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    store.save(TaskInfo(task_id="uqt_deep", backend="b", result=nested(MAX_JSON_DEPTH)))
    assert client.get("/api/tasks/uqt_deep").json()["result"] == nested(MAX_JSON_DEPTH)
    for too_deep in (nested(MAX_JSON_DEPTH + 1), nested(5000)):
        with pytest.raises(ValueError, match=f"more than {MAX_JSON_DEPTH} levels deep"):
            store.save(TaskInfo(task_id="uqt_deeper", backend="b", result=too_deep))
        with pytest.raises(ValueError, match="levels deep"):
            store.save(TaskInfo(task_id="uqt_deeper", backend="b", metadata={"m": too_deep}))
        with pytest.raises(ValueError, match="levels deep"):
            store.save_shard(TaskShard("uqt_deep", 0, "p", "b", result=too_deep))
    assert store.get("uqt_deeper") is None and store.get_shards("uqt_deep") == []


# -- the token fails closed, and the OpenAPI document says what is needed ----


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "set but empty"),
        ("   ", "set but blank"),
        ("\t\n", "set but blank"),
        (" padded", "leading or trailing whitespace"),
        ("padded\n", "leading or trailing whitespace"),
        ("tök3n", "non-ASCII"),
        ("two words", "spaces or control characters"),
        ("ctl\x01char", "spaces or control characters"),
    ],
)
def test_unusable_tokens_are_refused(
    store: TaskStore, monkeypatch: pytest.MonkeyPatch, token: str, reason: str
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", token)
    with pytest.raises(ValueError, match=reason) as excinfo:
        create_app(store)
    assert "UNIQC_STORE_API_TOKEN" in str(excinfo.value)
    if token.strip():
        assert token.strip() not in str(excinfo.value)  # the token is never echoed


def test_openapi_declares_statuses_and_the_bearer_scheme(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", "t0ken-for-tests")
    with api_server.client(create_app(store)) as http:
        assert http.get("/openapi.json").status_code == 401
        assert http.get("/docs").status_code == 401
        spec = http.get("/openapi.json", headers={"Authorization": "Bearer t0ken-for-tests"})
    document = spec.json()
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The value of UNIQC_STORE_API_TOKEN (only when the server has one set).",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            if path in PROBE_PATHS:  # a probe needs no token
                assert "401" not in declared and "security" not in operation
                continue
            if path == "/metrics":  # behind the token; read from memory, never a 503
                assert {"200", "401", "422"} <= declared and "503" not in declared
            else:
                assert {"200", "401", "422", "503"} <= declared, (method, path)
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            if "{task_id}" in path:
                assert {"404", "422"} <= declared, (method, path)
    for path in ("/api/tasks/{task_id}/archive", "/api/archive/restore/{task_id}"):
        assert "409" in document["paths"][path]["post"]["responses"]
    for path in ("/api/tasks/bulk-delete", "/api/tasks/bulk-archive"):
        assert "400" in document["paths"][path]["post"]["responses"]


def test_unknown_query_parameters_are_422(client: httpx.Client) -> None:
    for path in ("/api/tasks/counts", "/api/tasks?limitt=5", "/api/tasks/uqt_1?x=1"):
        sep = "&" if "?" in path else "?"
        response = client.get(f"{path}{sep}debug=1")
        assert response.status_code == 422 and response.json()["detail"][-1]["loc"][0] == "query"


def test_without_a_token_nothing_declares_401(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "401" not in operation["responses"] and "security" not in operation


def test_token_checks_on_routes_and_documents(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", "t0ken-for-tests")
    with api_server.client(create_app(store)) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            for path in ("/api/tasks", "/api/tasks/uqt_1", "/openapi.json", "/nope"):
                response = http.get(path, headers=headers)
                assert response.status_code == 401 and response.headers["www-authenticate"]
        good = {"Authorization": "Bearer t0ken-for-tests"}
        assert http.get("/api/tasks", headers=good).status_code == 200
        assert http.get("/api/tasks/uqt_1", headers=good).status_code == 404


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 450, 5000])
def test_rows_too_deep_from_other_tools_are_served_without_a_500(
    client: httpx.Client, store: TaskStore, depth: int
) -> None:
    store.save(TaskInfo(task_id="uqt_deep", backend="b"))
    deep = '{"a":' * depth + '{"token": "s3cret"}' + "}" * depth
    with store.engine.begin() as conn:  # raw text, as another tool writes it (not JSONText)
        conn.execute(
            text("UPDATE tasks SET result_json = :doc, metadata_json = :doc"), {"doc": deep}
        )
    response = client.get("/api/tasks/uqt_deep")
    assert response.status_code == 200 and "s3cret" not in response.text
    assert TOO_DEEP in response.text or "_invalid_json" in response.text
    listed = client.get("/api/tasks")
    assert listed.status_code == 200 and "s3cret" not in listed.text


def test_a_credentials_bundle_hides_its_secrets_and_keeps_the_rest(
    client: httpx.Client, store: TaskStore
) -> None:
    """The reference's API tests: ``result.credentials.access_key`` hidden,
    ``result.credentials.region == "cn"`` shown; the same in metadata and the archive."""
    bundle = {"access_key": "AKIA-s3cret", "secret_key": "sk-s3cret", "region": "cn"}
    store.save(
        TaskInfo(
            task_id="uqt_cred",
            backend="quark",
            status="success",
            result={"credentials": bundle, "counts": {"00": 3}},
            metadata={"credentials": bundle},
        )
    )
    shown = {"access_key": REDACTED, "secret_key": REDACTED, "region": "cn"}
    detail = client.get("/api/tasks/uqt_cred").json()
    assert detail["result"] == {"credentials": shown, "counts": {"00": 3}}
    assert detail["result"]["credentials"]["region"] == "cn"
    assert detail["metadata"] == {"credentials": shown}
    assert client.get("/api/tasks").json()["tasks"][0]["metadata"] == {"credentials": shown}
    assert client.post("/api/tasks/uqt_cred/archive").status_code == 200
    archived = client.get("/api/archive/uqt_cred").json()
    assert archived["result"]["credentials"] == shown and "s3cret" not in json.dumps(archived)


# -- issue 17: bodies, bounded reports, health, version, typed documents, 409 wording ---


@pytest.mark.parametrize("route", ["bulk-archive", "bulk-delete"])
def test_a_wrong_body_key_is_422_not_a_silent_no_op(
    client: httpx.Client, store: TaskStore, route: str
) -> None:
    store.save(TaskInfo(task_id="uqt_1", backend="a", status="success"))
    response = client.post(f"/api/tasks/{route}", json={"ids": ["uqt_1"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "ids"]
    assert store.get("uqt_1") is not None  # nothing happened


def _old(store: TaskStore, task_id: str, status: str) -> None:
    store.save(TaskInfo(task_id=task_id, backend="a", status=status))
    old = (datetime.now(timezone.utc) - timedelta(hours=10)).isoformat()
    with store.engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(update_time=old))


def test_archive_expired_takes_a_json_body(client: httpx.Client, store: TaskStore) -> None:
    _old(store, "uqt_run", "running")
    _old(store, "uqt_done", "success")
    refused = client.post("/api/tasks/archive-expired", json={"hours": -5})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "hours"]
    for wrong in ({"hourz": 5}, {"hours": "5"}, {"terminal_only": 0}, {"hours": 1e6}):
        response = client.post("/api/tasks/archive-expired", json=wrong)
        assert response.status_code == 422, wrong
    assert store.count() == 2  # nothing was archived by the refused calls
    # a field in the body wins over the same query parameter; the others still count
    mixed = client.post(
        "/api/tasks/archive-expired",
        params={"hours": 1, "terminal_only": "false"},
        json={"hours": 20},
    ).json()
    assert (mixed["hours"], mixed["terminal_only"], mixed["count"]) == (20, False, 0)

    body = client.post("/api/tasks/archive-expired", json={"hours": 5, "terminal_only": False})
    assert body.status_code == 200, body.text
    report = body.json()
    assert (report["hours"], report["terminal_only"]) == (5, False)
    assert sorted(report["archived"]) == ["uqt_done", "uqt_run"] and report["count"] == 2
    assert store.count() == 0
    # an empty body leaves the query parameters (and the defaults) in charge
    _old(store, "uqt_new", "success")
    kept = client.post("/api/tasks/archive-expired", params={"hours": 11}, json={}).json()
    assert (kept["hours"], kept["count"], store.count()) == (11, 0, 1)


def test_archive_expired_reports_counts_and_bounded_ids(
    client: httpx.Client, store: TaskStore
) -> None:
    many = 1005
    old = (datetime.now(timezone.utc) - timedelta(hours=100)).isoformat()
    store.save_many(TaskInfo(f"uqt_r{i:04}", "a", "running") for i in range(many))
    store.save_many(TaskInfo(f"uqt_s{i:04}", "a", "success") for i in range(many))
    store.save_many(TaskInfo(f"uqt_c{i:04}", "a", "failed") for i in range(3))
    for i in range(3):
        store.archive_task(f"uqt_c{i:04}")
    store.save_many(TaskInfo(f"uqt_c{i:04}", "a", "failed") for i in range(3))  # live again
    with store.engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.status != "running").values(update_time=old))
    report = client.post("/api/tasks/archive-expired", params={"hours": 72}).json()
    assert report["count"] == many and len(report["archived"]) == 1000
    assert report["archived_truncated"] is True
    assert set(report["archived"]) <= {f"uqt_s{i:04}" for i in range(many)}
    assert report["skipped_running_count"] == many and len(report["skipped_running"]) == 1000
    assert report["skipped_running_truncated"] is True
    assert report["skipped_conflicts_count"] == 3 and report["skipped_conflicts_truncated"] is False
    assert sorted(report["skipped_conflicts"]) == ["uqt_c0000", "uqt_c0001", "uqt_c0002"]
    assert store.count_archived() == many + 3
    # the reference's keys are all still there
    assert {"archived", "count", "hours", "terminal_only", "skipped_running"} <= set(report)


def test_health_and_version(client: httpx.Client, store: TaskStore) -> None:
    assert client.get("/api/health").json() == {
        "status": "ok",
        "database": "reachable",
        "dialect": store.dialect,
    }
    assert client.get("/api/version").json() == {
        "version": importlib.metadata.version("uniqc-store"),
        "schema_version": CURRENT_SCHEMA_VERSION,
        "current_schema_version": CURRENT_SCHEMA_VERSION,
    }
    assert client.get("/api/health?verbose=1").status_code == 422


def test_health_is_503_when_the_database_is_down(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: object, **_kwargs: object) -> int:
        raise DatabaseUnavailableError("cannot open the task database at x://u:***@db: refused")

    app = create_app(store)
    monkeypatch.setattr(store, "schema_version", down)
    monkeypatch.setattr(store, "count", down)
    monkeypatch.setattr(store, "tally", down)
    with api_server.client(app) as http:
        health = http.get("/api/health")
        assert health.status_code == 503
        assert health.json() == {
            "detail": "the task database cannot be reached (DatabaseUnavailableError); "
            "see the server log"
        }
        # any other route: a 503 with the store's (password-free) message, not a 500
        counts = http.get("/api/tasks/counts")
        assert counts.status_code == 503 and "cannot open the task database" in counts.text


def test_health_needs_no_token_but_version_does(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", "t0ken-for-tests")
    with api_server.client(create_app(store)) as http:
        assert http.get("/api/health").json()["status"] == "ok"
        assert http.get("/api/version").status_code == 401
        good = {"Authorization": "Bearer t0ken-for-tests"}
        version = http.get("/api/version", headers=good).json()["schema_version"]
        assert version == CURRENT_SCHEMA_VERSION


def test_there_is_no_cdn_docs_page(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_every_success_body_is_typed(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for name in ("TaskSummary", "TaskDetail", "TaskPage", "StatusCounts", "Shard", "ShardList"):
        assert name in schemas, name
    assert schemas["TaskPage"]["properties"]["tasks"]["items"] == {
        "$ref": "#/components/schemas/TaskSummary"
    }
    metrics = document["paths"].pop("/metrics")["get"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE_LATEST, OPENMETRICS]  # Prometheus's text formats
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema.get("$ref", "").startswith("#/components/schemas/"), (method, path)


def test_conflicts_are_worded_for_rest_callers(client: httpx.Client, store: TaskStore) -> None:
    store.save(TaskInfo(task_id="uqt_x", backend="a"))
    store.archive_task("uqt_x")
    store.save(TaskInfo(task_id="uqt_x", backend="a"))  # live and archived
    archive = client.post("/api/tasks/uqt_x/archive")
    assert archive.status_code == 409
    assert archive.json()["detail"] == (
        "task 'uqt_x' is already in the archive; nothing was moved. "
        "DELETE /api/archive/uqt_x to drop the archived copy and archive again, "
        "or DELETE /api/tasks/uqt_x to drop the live task."
    )
    restore = client.post("/api/archive/restore/uqt_x")
    assert restore.status_code == 409
    assert restore.json()["detail"] == (
        "task 'uqt_x' exists as a live task; nothing was moved. "
        "DELETE /api/tasks/uqt_x to drop the live task, or DELETE /api/archive/uqt_x "
        "to drop the archived copy."
    )
    for response in (archive, restore):
        assert "()" not in response.json()["detail"]  # no Python calls for REST callers
    # the library keeps its own wording for Python callers
    with pytest.raises(TaskConflictError, match="already in the archive"):
        store.archive_task("uqt_x")
    # and following the advice works
    assert client.delete("/api/archive/uqt_x").status_code == 200
    assert client.post("/api/tasks/uqt_x/archive").json() == {"archived": "uqt_x"}


def test_odd_rows_validate_against_the_response_models(
    client: httpx.Client, store: TaskStore
) -> None:
    """Rows another tool wrote: broken JSON (the ``_invalid_json`` marker), a non-object
    metadata, nulls, an unknown status; all are served (and match the declared types)."""
    store.save(TaskInfo(task_id="uqt_odd", backend="a", status="failed", shots=0))
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE tasks SET result_json = :broken, metadata_json = :list, "
                "status = 'exploded', error_message = NULL"
            ),
            {"broken": '{"token": "s3cret", ', "list": '[1, {"api_key": "k"}]'},
        )
    detail = client.get("/api/tasks/uqt_odd")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["status"] == "exploded" and body["error_message"] is None
    assert body["metadata"] == [1, {"api_key": REDACTED}]
    assert set(body["result"]) == {"_invalid_json"} and "s3cret" not in detail.text
    listed = client.get("/api/tasks")
    assert listed.status_code == 200 and listed.json()["tasks"][0]["has_result"] is True


def _archived_days_ago(store: TaskStore, task_id: str, days: float) -> None:
    store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
    store.save_shard(TaskShard(task_id, 0, f"{task_id}-x", "b"))
    assert store.archive_task(task_id)
    stamp = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    with store.engine.begin() as conn:
        table = archived_tasks
        conn.execute(update(table).where(table.c.task_id == task_id).values(archived_at=stamp))


def test_purge_route_dry_run_and_run(client: httpx.Client, store: TaskStore) -> None:
    for i, days in enumerate((40, 35, 2)):
        _archived_days_ago(store, f"uqt_{i}", days)
    body = {"older_than_hours": 24 * 30, "dry_run": True}
    dry = client.post("/api/archive/purge", json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "older_than_hours": 720.0,
        "keep_last": 0,
        "dry_run": True,
        "tasks": 2,
        "shards": 2,
        "batches": 1,
        "task_ids": ["uqt_0", "uqt_1"],
        "ids_complete": True,
    }
    assert store.count_archived() == 3
    done = client.post("/api/archive/purge", json={"older_than_hours": 720, "keep_last": 2})
    assert done.json()["task_ids"] == ["uqt_0"] and done.json()["batches"] == 1
    assert sorted(t.task_id for t in store.list_archived()) == ["uqt_1", "uqt_2"]
    for wrong in (
        {},  # older_than_hours is required
        {"older_than_hours": -1},
        {"older_than_hours": "720"},
        {"older_than_hours": 1, "keep_last": -1},
        {"older_than_hours": 1, "batch_size": 0},
        {"older_than_hours": 1, "dry_run": 1},
        {"older_than_hours": 1, "extra": True},
        {"older_than_hours": 1, "keep_last": 1.5},
        {"older_than_hours": 1, "keep_last": "1"},
        {"older_than_hours": 1, "batch_size": True},
    ):
        assert client.post("/api/archive/purge", json=wrong).status_code == 422, wrong
    assert store.count_archived() == 2
    # JSON Schema's "integer" takes 2.0 (Schemathesis sends such numbers): so does the route
    whole = {"older_than_hours": 720, "keep_last": 2.0, "batch_size": 10.0, "dry_run": True}
    assert client.post("/api/archive/purge", json=whole).status_code == 200


def test_purge_route_refuses_a_forged_request(store: TaskStore) -> None:
    _archived_days_ago(store, "uqt_old", 40)
    with served(create_app(store)) as base, httpx.Client(base_url=base, timeout=30) as http:
        forged = http.post(
            "/api/archive/purge",
            content='{"older_than_hours": 0}',
            headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
        )
        assert forged.status_code == 403, forged.text
        assert store.count_archived() == 1


def test_purge_route_error_part_way_reports_what_was_deleted(
    client: httpx.Client, store: TaskStore, backend: str
) -> None:
    from tests.repository.test_retention import poisoned

    for task_id in ("uqt_a", "uqt_b", "uqt_poison"):
        _archived_days_ago(store, task_id, 40)
    with poisoned(store, backend, "DELETE", "uqt_poison"):
        response = client.post("/api/archive/purge", json={"older_than_hours": 1, "batch_size": 2})
    assert response.status_code == 503
    assert "part-way" in response.json()["detail"]
    assert response.json()["report"]["task_ids"] == ["uqt_a", "uqt_b"]
    assert [t.task_id for t in store.list_archived()] == ["uqt_poison"]


def test_ids_have_the_store_bound_at_the_api(store: TaskStore, client: httpx.Client) -> None:
    """One bound for ids everywhere (``records.MAX_KEY_LENGTH``, 255): the store takes
    a 255-character id and refuses a 256-character one; the API answers 404 for an
    unknown 255-character id and 422 for a 256-character one, in paths and bodies."""
    longest, too_long = "u" * MAX_KEY_LENGTH, "u" * (MAX_KEY_LENGTH + 1)
    store.save(TaskInfo(task_id=longest, backend="b"))
    with pytest.raises(ValueError, match="at most 255 characters"):
        store.save(TaskInfo(task_id=too_long, backend="b"))
    assert client.get(f"/api/tasks/{longest}").json()["task_id"] == longest
    assert client.get(f"/api/tasks/{'v' * MAX_KEY_LENGTH}").status_code == 404
    assert client.get(f"/api/tasks/{too_long}").status_code == 422
    assert client.get("/api/tasks", params={"backend": too_long}).status_code == 422
    refused = client.post("/api/tasks/bulk-delete", json={"task_ids": [too_long]})
    assert refused.status_code == 422
    assert store.count() == 1
