"""The REST API's bounds at their edges, built from the store's (``schema/validation.py``):
an id or backend of 255 characters is taken and 256 is a 422 in paths, queries and
bodies; an age in hours from 0 to below ``MAX_HOURS``; payloads ``MAX_JSON_DEPTH``
deep are served whole, a deeper one (only another tool can write it) cut at the
bound, never a 500. A 422 changes nothing. The bounds are checked before the store
is called, so one engine (SQLite) is enough; the app is served for real
(``tests/http_server.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.api.test_api import PATH_ROUTES
from tests.http_server import http_client
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import create_app
from uniqc_store.redaction import TOO_DEEP

#: The documented bounds, spelled out (not read from the code, so a changed bound fails here).
MAX_KEY_LENGTH, MAX_HOURS, MAX_JSON_DEPTH = 255, 1e6, 100

LONGEST, TOO_LONG = "t" * MAX_KEY_LENGTH, "t" * (MAX_KEY_LENGTH + 1)
BELOW_MAX = math.nextafter(MAX_HOURS, 0)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[TaskStore]:
    with TaskStore(tmp_path) as store:
        store.save(TaskInfo(task_id=LONGEST, backend="b" * MAX_KEY_LENGTH, status="success"))
        store.save_shard(TaskShard(LONGEST, 0, "p" * MAX_KEY_LENGTH, "b"))
        store.save(TaskInfo(task_id="uqt_archived", backend="b", status="success"))
        store.archive_task("uqt_archived")
        yield store


@pytest.fixture
def client(sqlite_store: TaskStore) -> Iterator[httpx.Client]:
    with http_client(create_app(sqlite_store)) as http:
        yield http


def _state(store: TaskStore) -> tuple[int, int, int]:
    return store.count(), store.count_archived(), len(store.get_shards(LONGEST))


#: Each route taking a task id in its path (method, path with ``{}`` for the id).
ID_ROUTES = [*PATH_ROUTES, ("GET", "/api/dashboard/task/{}")]


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=[" ".join(r) for r in ID_ROUTES])
def test_a_path_id_of_256_characters_is_a_422(
    client: httpx.Client, sqlite_store: TaskStore, method: str, path: str
) -> None:
    before = _state(sqlite_store)
    response = client.request(method, path.format(TOO_LONG))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]
    assert _state(sqlite_store) == before
    unknown = client.request(method, path.format("u" * MAX_KEY_LENGTH))
    assert unknown.status_code == 404, unknown.text  # taken: there is no such task


def test_a_255_character_id_is_served_with_its_shards(client: httpx.Client) -> None:
    task = client.get(f"/api/tasks/{LONGEST}").json()
    assert task["task_id"] == LONGEST and task["backend"] == "b" * MAX_KEY_LENGTH
    shards = client.get(f"/api/tasks/{LONGEST}/shards").json()
    assert [s["platform_task_id"] for s in shards["shards"]] == ["p" * MAX_KEY_LENGTH]


@pytest.mark.parametrize("path", ["/api/tasks", "/api/archive", "/api/dashboard/tasks"])
def test_a_backend_filter_of_256_characters_is_a_422(client: httpx.Client, path: str) -> None:
    assert client.get(path, params={"backend": TOO_LONG}).status_code == 422
    found = client.get(path, params={"backend": "b" * MAX_KEY_LENGTH})
    assert found.status_code == 200, found.text
    if path == "/api/tasks":
        assert [t["task_id"] for t in found.json()["tasks"]] == [LONGEST]


@pytest.mark.parametrize("route", ["/api/tasks/bulk-delete", "/api/tasks/bulk-archive"])
def test_a_body_id_of_256_characters_is_a_422(
    client: httpx.Client, sqlite_store: TaskStore, route: str
) -> None:
    before = _state(sqlite_store)
    refused = client.post(route, json={"task_ids": ["uqt_other", TOO_LONG]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "task_ids", 1]
    assert _state(sqlite_store) == before
    taken = client.post(route, json={"task_ids": [LONGEST]})
    assert taken.status_code == 200, taken.text
    assert LONGEST in str(taken.json())
    assert sqlite_store.get(LONGEST) is None  # deleted or archived


def _expire(client: httpx.Client, age: Any, *, body: bool) -> httpx.Response:
    if body:
        return client.post("/api/tasks/archive-expired", json={"hours": age})
    return client.post("/api/tasks/archive-expired", params={"hours": age})


#: The routes taking an age in hours, each as a function of the age.
AGES = {
    "archive-expired?hours": lambda c, h: _expire(c, h, body=False),
    "archive-expired {hours}": lambda c, h: _expire(c, h, body=True),
    "purge {older_than_hours}": lambda c, h: c.post(
        "/api/archive/purge", json={"older_than_hours": h}
    ),
    "dashboard/expired?hours": lambda c, h: c.get("/api/dashboard/expired", params={"hours": h}),
}


@pytest.mark.parametrize("route", list(AGES))
def test_hours_from_0_to_below_max_hours(
    client: httpx.Client, sqlite_store: TaskStore, route: str
) -> None:
    before = _state(sqlite_store)
    for refused in (MAX_HOURS, -1e-9):
        response = AGES[route](client, refused)
        assert response.status_code == 422, (refused, response.text)
        where = response.json()["detail"][0]["loc"]
        assert where[-1] in ("hours", "older_than_hours")  # the API's own bound, not the store's
    assert _state(sqlite_store) == before
    taken = AGES[route](client, BELOW_MAX)  # over a century: nothing is that old
    assert taken.status_code == 200, taken.text
    assert _state(sqlite_store) == before


def nested(depth: int, inner: object = 1) -> object:
    value: object = inner
    for _ in range(depth):
        value = {"a": value}
    return value


def test_payloads_max_json_depth_deep_are_served_whole_and_deeper_as_text(
    client: httpx.Client, sqlite_store: TaskStore
) -> None:
    sqlite_store.save(TaskInfo(task_id="uqt_deep", backend="b", result=nested(MAX_JSON_DEPTH)))
    served = client.get("/api/tasks/uqt_deep")
    assert served.status_code == 200 and served.json()["result"] == nested(MAX_JSON_DEPTH)
    assert TOO_DEEP not in served.text
    deeper = '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)
    with sqlite_store.engine.begin() as conn:  # raw text, as another tool writes it
        conn.execute(text("UPDATE tasks SET result_json = :doc"), {"doc": deeper})
    cut = client.get("/api/tasks/uqt_deep")  # not walked below the bound: cut there
    assert cut.status_code == 200
    assert cut.json()["result"] == nested(MAX_JSON_DEPTH, TOO_DEEP)
