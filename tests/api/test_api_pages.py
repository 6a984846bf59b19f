"""Cursor pages and the bulk routes of the REST API, over HTTP, on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http_server import SharedServer
from tests.poison import poisoned
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import create_app
from uniqc_store.api.bodies import MAX_IDS
from uniqc_store.repository import archive
from uniqc_store.repository.pages import MAX_CURSOR_LENGTH


@pytest.fixture
def client(store: TaskStore, api_server: SharedServer) -> Iterator[httpx.Client]:
    with api_server.client(create_app(store)) as http:
        yield http


def seed(store: TaskStore, count: int = 10) -> None:
    store.save_many(
        TaskInfo(
            f"uqt_{i:02d}",
            "a" if i % 3 else "b",
            "success" if i % 2 else "failed",
            submit_time=f"2025-01-01T00:00:{i // 2:02d}+00:00",  # ties of two
        )
        for i in range(count)
    )


def walk(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    bodies, cursor = [], ""
    for _ in range(1000):
        response = client.get(path, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        cursor = bodies[-1]["next_cursor"]
        if cursor is None:
            return bodies
    raise AssertionError("the walk does not end")


def ids_of(bodies: list[dict[str, Any]]) -> list[str]:
    return [t["task_id"] for body in bodies for t in body["tasks"]]


def store_walk(store: TaskStore, **filters: Any) -> list[str]:
    ids, cursor = [], None
    while True:
        page = store.list_page(**filters, limit=3, cursor=cursor)
        ids += [t.task_id for t in page.tasks]
        if (cursor := page.next_cursor) is None:
            return ids


def test_a_cursor_walk_is_the_stores(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    bodies = walk(client, "/api/tasks", limit=3)
    assert ids_of(bodies) == store_walk(store) and len(ids_of(bodies)) == 10
    assert [len(b["tasks"]) for b in bodies] == [3, 3, 3, 1]
    assert all(b["total"] is None and b["offset"] == 0 and b["limit"] == 3 for b in bodies)
    counted = walk(client, "/api/tasks", limit=4, status="success", total="true")
    assert ids_of(counted) == store_walk(store, status="success")
    assert all(b["total"] == 5 for b in counted)
    assert bodies[0]["tasks"][0]["has_result"] is False  # the same summaries as offset pages


def test_offset_pages_are_as_before(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    body = client.get("/api/tasks", params={"limit": 2, "offset": 1}).json()
    assert [t["task_id"] for t in body["tasks"]] == [
        t.task_id for t in store.list(limit=2, offset=1)
    ]
    assert (body["total"], body["limit"], body["offset"], body["next_cursor"]) == (10, 2, 1, None)
    uncounted = client.get("/api/tasks", params={"total": "false"}).json()
    assert uncounted["total"] is None and len(uncounted["tasks"]) == 10


def test_the_archive_pages_by_cursor(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    for i in range(0, 10, 2):
        assert store.archive_task(f"uqt_{i:02d}")
    bodies = walk(client, "/api/archive", limit=2, backend="a", total="true")
    assert ids_of(bodies) == ["uqt_08", "uqt_04", "uqt_02"] and bodies[0]["total"] == 3
    assert all(t["archived_at"] for b in bodies for t in b["tasks"])
    live_cursor = client.get("/api/tasks", params={"cursor": "", "limit": 1}).json()
    refused = client.get("/api/archive", params={"cursor": live_cursor["next_cursor"]})
    assert refused.status_code == 422 and "pages live tasks" in refused.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"cursor": "bm9wZQ"}, "cursor is not one this store gave"),
        ({"cursor": "", "offset": 3}, "offset cannot be combined with cursor"),
        ({"cursor": "", "limit": 0}, "limit must be from 1"),
        ({"cursor": "a+b/"}, "string_pattern_mismatch"),
        ({"cursor": "A" * (MAX_CURSOR_LENGTH + 1)}, "string_too_long"),
        ({"total": "maybe"}, "bool_parsing"),
    ],
)
def test_bad_paging_is_422(
    client: httpx.Client, store: TaskStore, params: dict[str, Any], says: str
) -> None:
    seed(store, 2)
    for path in ("/api/tasks", "/api/archive"):
        response = client.get(path, params=params)
        assert response.status_code == 422 and says in response.text, response.text


def test_the_document_describes_cursor_pages(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/api/tasks", "/api/archive"):
        params = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        cursor = next(s for s in params["cursor"]["schema"]["anyOf"] if s.get("type") == "string")
        assert cursor["maxLength"] == MAX_CURSOR_LENGTH and cursor["pattern"] == r"^[A-Za-z0-9_-]*$"
        assert {s.get("type") for s in params["total"]["schema"]["anyOf"]} == {"boolean", "null"}
        assert "first page" in params["cursor"]["description"]
    page = document["components"]["schemas"]["TaskPage"]["properties"]
    assert {s.get("type") for s in page["next_cursor"]["anyOf"]} == {"string", "null"}
    assert {s.get("type") for s in page["total"]["anyOf"]} == {"integer", "null"}


def test_bulk_routes_report_as_before(client: httpx.Client, store: TaskStore) -> None:
    """Repeats, unknown ids and conflicts, as the routes reported them when they made one
    store call per id."""
    for task_id in ("uqt_a", "uqt_b", "uqt_c", "uqt_x", "uqt_y"):
        store.save(TaskInfo(task_id, "b"))
    store.save_shard(TaskShard("uqt_a", 0, "p-a", "b"))
    assert store.archive_task("uqt_b") and store.archive_task("uqt_c")
    store.save(TaskInfo("uqt_b", "b"))  # live and archived
    ids = ["uqt_a", "uqt_b", "uqt_c", "nope", "uqt_a", "uqt_b"]
    assert client.post("/api/tasks/bulk-archive", json={"task_ids": ids}).json() == {
        "archived": ["uqt_a"],
        "missing": ["uqt_c", "nope", "uqt_a"],
        "conflicts": ["uqt_b", "uqt_b"],
        "count": 1,
    }
    assert store.get_archived_shards("uqt_a")[0].platform_task_id == "p-a"
    ids = ["uqt_x", "nope", "uqt_y", "uqt_x", "nope"]
    assert client.post("/api/tasks/bulk-delete", json={"task_ids": ids}).json() == {
        "deleted": ["uqt_x", "uqt_y"],
        "missing": ["nope", "nope"],
        "count": 2,
    }


def test_bulk_delete_of_the_most_ids(client: httpx.Client, store: TaskStore) -> None:
    live = [f"uqt_{i:05d}" for i in range(0, MAX_IDS, 10)]
    store.save_many(TaskInfo(t, "b") for t in live)
    ids = [f"uqt_{i:05d}" for i in range(MAX_IDS)]
    body = client.post("/api/tasks/bulk-delete", json={"task_ids": ids}).json()
    assert body["deleted"] == live and body["count"] == len(live) == MAX_IDS // 10
    assert len(body["missing"]) == MAX_IDS - len(live) and store.count() == 0


def test_a_bulk_route_failing_part_way_says_what_was_done(
    client: httpx.Client, store: TaskStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "CHUNK", 2)
    ids = ["uqt_1", "uqt_2", "uqt_poison", "uqt_3"]
    store.save_many(TaskInfo(t, "b") for t in ids)
    with poisoned(store, backend, "DELETE", "uqt_poison", "tasks"):
        response = client.post("/api/tasks/bulk-delete", json={"task_ids": ids})
    assert response.status_code == 503 and "stopped part-way" in response.json()["detail"]
    assert response.json()["report"] == {"deleted": ["uqt_1", "uqt_2"], "missing": []}
    assert sorted(t.task_id for t in store.list()) == ["uqt_3", "uqt_poison"]
