"""The dashboard's routes (over HTTP from a real uvicorn server, every engine) and
the change signal behind /api/events.

The browser tests are in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import URL

from tests.http_server import SharedServer, served
from uniqc_store import TaskInfo, TaskShard, TaskStore
from uniqc_store.api.app import REDACTED, create_app
from uniqc_store.api.dashboard import queries
from uniqc_store.db.urls import redact
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.repository.changes import ChangeFeed, open_signal

TOKEN = "t0ken-for-dashboard"


def seed(store: TaskStore, n: int = 7) -> list[str]:
    """``n`` tasks, one submitted per day of January 2024 (so the newest is the last)."""
    ids = [f"uqt_{i:02d}" for i in range(n)]
    store.save_many(
        TaskInfo(
            task_id=task_id,
            backend="a" if i % 2 else "b",
            status=["success", "failed", "running"][i % 3],
            submit_time=f"2024-01-{i + 1:02d}T00:00:00+00:00",
            metadata={"api_key": "k-1", "user": "ada"},
            result={"token": "s3cret", "counts": {"0": i}},
        )
        for i, task_id in enumerate(ids)
    )
    return ids


@pytest.fixture
def client(store: TaskStore, api_server: SharedServer) -> Iterator[httpx.Client]:
    with api_server.client(create_app(store)) as http:
        yield http


def walk(client: httpx.Client, **params: object) -> list[list[str]]:
    """Every page of ``/api/dashboard/tasks`` with ``params``, following the cursors."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/dashboard/tasks", params=query).json()
        pages.append([t["task_id"] for t in body["tasks"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_pages_follow_cursors_in_both_orders(client: httpx.Client, store: TaskStore) -> None:
    ids = seed(store)
    newest = list(reversed(ids))
    assert walk(client, limit=3) == [newest[0:3], newest[3:6], newest[6:]]
    assert walk(client, limit=3, order="oldest") == [ids[0:3], ids[3:6], ids[6:]]
    body = client.get("/api/dashboard/tasks", params={"status": "success", "limit": 1}).json()
    assert body["total"] == 3 and [t["task_id"] for t in body["tasks"]] == ["uqt_06"]
    assert set(body["tasks"][0]) == {*queries.SUMMARY_COLUMNS}  # no result, no metadata
    assert walk(client, backend="a") == [["uqt_05", "uqt_03", "uqt_01"]]


def test_ties_on_submit_time_page_without_gaps(client: httpx.Client, store: TaskStore) -> None:
    store.save_many(
        TaskInfo(task_id=f"uqt_{i}", backend="b", submit_time="2024-01-01T00:00:00+00:00")
        for i in range(5)
    )
    pages = walk(client, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(t for p in pages for t in p) == [f"uqt_{i}" for i in range(5)]


def test_archive_table_and_bad_parameters(client: httpx.Client, store: TaskStore) -> None:
    seed(store, 3)
    store.archive_task("uqt_01")
    body = client.get("/api/dashboard/tasks", params={"table": "archived"}).json()
    assert body["total"] == 1 and body["tasks"][0]["archived_at"]
    assert client.get("/api/dashboard/tasks", params={"cursor": "nope"}).status_code == 422
    assert client.get("/api/dashboard/tasks", params={"table": "x"}).status_code == 422
    assert client.get("/api/dashboard/tasks", params={"limit": 201}).status_code == 422
    assert client.get("/api/dashboard/tasks", params={"status": "done"}).status_code == 422


def test_counts_by_status_and_backend(client: httpx.Client, store: TaskStore) -> None:
    seed(store)
    store.archive_task("uqt_00")
    live = client.get("/api/dashboard/counts").json()
    assert live["status"] == {
        "pending": 0,
        "running": 2,
        "success": 2,
        "failed": 2,
        "cancelled": 0,
    }
    assert live["backend"] == {"a": 3, "b": 3} and live["total"] == 6
    archived = client.get("/api/dashboard/counts", params={"table": "archived"}).json()
    assert archived["backend"] == {"b": 1} and archived["total"] == 1


def test_one_task_live_then_archived_redacted(client: httpx.Client, store: TaskStore) -> None:
    seed(store, 2)
    store.save_shard(TaskShard("uqt_01", 0, "plat-1", "a", result={"auth": "x", "n": 1}))
    body = client.get("/api/dashboard/task/uqt_01").json()
    assert body["archived"] is False and body["task"]["archived_at"] is None
    assert body["task"]["metadata"] == {"api_key": REDACTED, "user": "ada"}
    assert body["task"]["result"] == {"token": REDACTED, "counts": {"0": 1}}
    assert body["shards"][0]["result"] == {"auth": REDACTED, "n": 1}
    store.archive_task("uqt_01")
    body = client.get("/api/dashboard/task/uqt_01").json()
    assert body["archived"] is True and body["task"]["archived_at"]
    assert [s["platform_task_id"] for s in body["shards"]] == ["plat-1"]
    assert client.get("/api/dashboard/task/nope").status_code == 404


def test_error_messages_are_masked_live_and_archived(
    client: httpx.Client, store: TaskStore
) -> None:
    """The REST routes' redaction, error messages of the task and its shards included."""
    message = "upstream https://ada:pw0rd@quark.example/x: token=abc, Bearer t0k!$%"
    store.save(TaskInfo("uqt_e", "a", "failed", error_message=message, metadata={"tOkEn": "x"}))
    store.save_shard(TaskShard("uqt_e", 0, "plat-1", "a", error_message=f"shard: {message}"))
    masked = "upstream https://ada:***@quark.example/x: token=***, Bearer ***"
    for _ in ("live", "archived"):
        body = client.get("/api/dashboard/task/uqt_e").json()
        assert body["task"]["error_message"] == masked
        assert body["shards"][0]["error_message"] == f"shard: {masked}"
        assert body["task"]["metadata"] == {"tOkEn": REDACTED}
        rest = client.get(f"/api/{'archive' if body['archived'] else 'tasks'}/uqt_e").json()
        assert rest["error_message"] == body["task"]["error_message"]  # one set of rules
        store.archive_task("uqt_e")


def test_input_no_engine_can_take_is_422(client: httpx.Client, store: TaskStore) -> None:
    """A NUL in ``?backend=`` or in a cursor reached PostgreSQL (a 500); refused first."""
    seed(store, 2)
    nul_cursor = queries.encode_cursor("2024-01-01\x00", "uqt_00")
    for query in ("backend=a%00b", f"cursor={nul_cursor}", "cursor=nope", "hours=1e6"):
        path = "/api/dashboard/expired" if query.startswith("hours") else "/api/dashboard/tasks"
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422, (query, response.text)
    assert client.get("/api/dashboard/task/a%00b").status_code == 422
    assert client.get("/api/dashboard/tasks?debug=1").status_code == 422  # as the REST routes


def test_expired_dry_run_moves_nothing(client: httpx.Client, store: TaskStore) -> None:
    seed(store, 3)
    body = client.get("/api/dashboard/expired", params={"hours": 0}).json()
    assert body["count"] == 2 and sorted(body["task_ids"]) == ["uqt_00", "uqt_01"]
    every = client.get("/api/dashboard/expired", params={"hours": 0, "terminal_only": False})
    assert every.json()["count"] == 3
    assert store.count() == 3 and store.count_archived() == 0
    assert client.get("/api/dashboard/expired", params={"hours": -1}).status_code == 422


def test_info_shows_the_url_without_its_password(client: httpx.Client, store: TaskStore) -> None:
    body = client.get("/api/dashboard/info").json()
    assert body["schema_version"] == body["current_schema_version"] == CURRENT_SCHEMA_VERSION
    assert body["dialect"] == store.engine.dialect.name
    assert body["database"] == redact(store.url)
    if store.url.password:
        assert str(store.url.password) not in body["database"]


def test_page_is_public_and_data_needs_the_token(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", TOKEN)
    with api_server.client(create_app(store)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<title>uniqc-store</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
        for path in ("/api/dashboard/info", "/api/dashboard/tasks", "/api/events"):
            assert client.get(path).status_code == 401, path
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/dashboard/counts", headers=good).status_code == 200
        assert client.get("/dashboard/../api/tasks").status_code == 401


def test_dashboard_routes_check_the_token_without_the_middleware(
    api_server: SharedServer, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Besides the middleware, each dashboard route checks the token itself (the app's
    route dependency), while the page stays a plain route outside it."""
    monkeypatch.setenv("UNIQC_STORE_API_TOKEN", TOKEN)
    app = create_app(store)
    app.user_middleware.clear()  # the app builds its middleware stack on first use
    with api_server.client(app) as client:
        assert client.get("/api/dashboard/info").status_code == 401
        assert client.get("/api/dashboard/counts").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/dashboard/info", headers=good).status_code == 200
        assert client.get("/").status_code == 200


def wait_for_change(read: object, before: object, seconds: float = 5.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = read()  # type: ignore[operator]
        if now != before:
            return now
        time.sleep(0.1)
    raise AssertionError(f"the change signal did not move from {before!r}")


def test_signal_moves_when_another_connection_writes(module_url: URL, store: TaskStore) -> None:
    signal = open_signal(store)
    other = TaskStore(url=module_url)
    try:
        before = signal.read()
        if module_url.get_backend_name() == "sqlite":  # servers count other databases too
            assert signal.read() == before  # reading does not move it
        other.save(TaskInfo(task_id="uqt_x", backend="b"))
        after = wait_for_change(signal.read, before)
        other.archive_task("uqt_x")
        wait_for_change(signal.read, after)
    finally:
        signal.close()
        other.close()


def test_in_memory_sqlite_signal_sees_its_own_writes() -> None:
    with TaskStore(url="sqlite://") as store:
        signal = open_signal(store)
        before = signal.read()
        store.save(TaskInfo(task_id="uqt_m", backend="b"))
        assert signal.read() != before
        signal.close()


class FakeSignal:
    exact = True

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.closed = 0

    def read(self) -> int:
        self.reads += 1
        return self.value

    def close(self) -> None:
        self.closed += 1


def test_feed_polls_only_while_listened_to() -> None:
    signal = FakeSignal()
    feed = ChangeFeed(lambda: signal, interval=0.01)

    async def scenario() -> list[str]:
        listener = feed.listen(heartbeat=0.2)
        seen = [await anext(listener)]  # ready: the first marker is read
        signal.value = 1
        seen.append(await anext(listener))
        seen.append(await anext(listener))  # quiet: a heartbeat
        await listener.aclose()
        await asyncio.sleep(0.05)
        return seen

    assert asyncio.run(scenario()) == ["ready", "change", "heartbeat"]
    reads = signal.reads
    time.sleep(0.05)
    assert signal.reads == reads and signal.closed == 1


def test_inexact_signal_is_announced_again_after_it_settles() -> None:
    """MariaDB's counters move before the commit: one more change after they stop."""
    signal = FakeSignal()
    signal.exact = False
    feed = ChangeFeed(lambda: signal, interval=0.01)

    async def scenario() -> list[str]:
        listener = feed.listen(heartbeat=0.3)
        seen = [await anext(listener)]
        signal.value = 1
        seen += [await anext(listener), await anext(listener), await anext(listener)]
        await listener.aclose()
        return seen

    assert asyncio.run(scenario()) == ["ready", "change", "change", "heartbeat"]


def test_closing_the_feed_ends_every_stream() -> None:
    """``uniqc-store serve`` closes the feed on Ctrl-C, so open tabs do not hold the exit."""
    feed = ChangeFeed(FakeSignal, interval=0.01)

    async def scenario() -> list[str]:
        listener = feed.listen(heartbeat=5)
        seen = [await anext(listener)]
        waiting = asyncio.ensure_future(anext(listener, "ended"))
        await asyncio.sleep(0.05)
        feed.close()
        seen.append(await asyncio.wait_for(waiting, 1))
        return seen

    assert asyncio.run(scenario()) == ["ready", "ended"]


def test_listeners_cancelled_as_a_change_is_announced_end() -> None:
    """A client that disconnects (its stream cancelled) in the same turn of the loop
    as a change wakes it: its listener ends, cancelled. Under ``asyncio.wait_for``
    (Python 3.11) the wake-up won and the cancellation was dropped, so the stream
    of a gone client ran on (and with a Condition, could end in "Lock is not
    acquired": one traceback per disconnect in benchmarks/served_api.py)."""
    feed = ChangeFeed(FakeSignal, interval=0.01)

    async def listen_forever() -> None:
        async for _event in feed.listen(heartbeat=5):
            pass

    async def scenario() -> list[str]:
        wrong: list[str] = []
        for _round in range(20):
            tasks = [asyncio.ensure_future(listen_forever()) for _ in range(10)]
            await asyncio.sleep(0.05)  # every listener waits for a change
            await feed._announce()  # wakes them all ...
            for task in tasks:
                task.cancel()  # ... and each client goes before its wake-up runs
            done, running = await asyncio.wait(tasks, timeout=2)
            wrong += ["ran on after its cancel"] * len(running)
            wrong += [repr(t.exception()) for t in done if not t.cancelled()]
            if running:
                feed.close()  # end them, so the test fails rather than hangs
                await asyncio.wait(running, timeout=2)
                break
        return wrong

    assert asyncio.run(scenario()) == []
    assert feed.listeners == 0 and not feed.polling


def test_a_closed_tab_stops_the_polling(tmp_path: Path) -> None:
    """Over real HTTP: a stream that ends leaves no listener, no poller, no connection."""
    store = TaskStore(cache_dir=tmp_path)
    app = create_app(store)
    try:
        with served(app) as base:
            feed = app.state.change_feed
            with httpx.stream("GET", f"{base}/api/events", timeout=5) as stream:
                lines = stream.iter_lines()
                first = [next(lines) for _ in range(3)]
                assert first == ["retry: 3000", "event: ready", "data: {}"]
                store.save(TaskInfo(task_id="uqt_seen", backend="b"))
                assert next(line for line in lines if line.startswith("event:")) == "event: change"
                assert feed.listeners == 1 and feed.polling
            deadline = time.monotonic() + 5
            while feed.listeners or feed.polling:
                assert time.monotonic() < deadline, "the stream's listener outlived its client"
                time.sleep(0.05)
    finally:
        store.close()


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``python -m benchmarks.dashboard`` on a small store, without the browser."""
    from benchmarks.dashboard import main

    path = tmp_path / "bench.sqlite"
    assert main(["--tasks", "300", "--repeats", "1", "--no-browser", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "300 live tasks" in out and "first page (info + tasks + counts)" in out


def test_search_by_id_prefix_and_platform_id_live_and_archived(
    client: httpx.Client, store: TaskStore
) -> None:
    ids = [
        "uqt_ab1",
        "uqt_ab2",
        "uqt_ab",
        "uqt_ac",
        "uqt_aa9",
        "uqt_a%",
        "uqt_a_b",
        "uqt_ab\U0010ffff",
    ]
    store.save_many(TaskInfo(task_id=i, backend="b") for i in ids)
    store.save_shard(TaskShard("uqt_ac", 0, "plat-7", "b"))
    store.save_shard(TaskShard("uqt_aa9", 0, "plat-7", "b"))
    store.archive_task("uqt_ab2")
    store.archive_task("uqt_aa9")

    def found(q: str) -> list[tuple[str, str, str]]:
        response = client.get("/api/dashboard/search", params={"q": q})
        assert response.status_code == 200, response.text
        return [(t["task_id"], t["table"], t["matched"]) for t in response.json()["tasks"]]

    assert found("uqt_ab") == [
        ("uqt_ab", "live", "task_id"),
        ("uqt_ab1", "live", "task_id"),
        ("uqt_ab\U0010ffff", "live", "task_id"),
        ("uqt_ab2", "archived", "task_id"),
    ]
    assert found("uqt_ab1") == [("uqt_ab1", "live", "task_id")]
    assert found("uqt_a_") == [("uqt_a_b", "live", "task_id")]  # "_" is no wildcard
    assert found("uqt_a%") == [("uqt_a%", "live", "task_id")]  # nor "%"
    assert found("uqt_ab\U0010ffff") == [("uqt_ab\U0010ffff", "live", "task_id")]
    assert found("plat-7") == [
        ("uqt_ac", "live", "platform_task_id"),
        ("uqt_aa9", "archived", "platform_task_id"),
    ]
    assert found("plat-") == []  # a platform id matches exactly
    assert found("uqt_zz") == []
    body = client.get("/api/dashboard/search", params={"q": "uqt_"}).json()
    assert body["more"] is False and len(body["tasks"]) == len(ids)
    assert set(body["tasks"][0]) == {*queries.SUMMARY_COLUMNS, "table", "matched"}
    for bad in ("", "a\x00b", "x" * 1025):
        assert client.get("/api/dashboard/search", params={"q": bad}).status_code == 422
    assert client.get("/api/dashboard/search").status_code == 422


def test_search_stops_at_its_limit(client: httpx.Client, store: TaskStore) -> None:
    store.save_many(
        TaskInfo(task_id=f"uqt_{i:03d}", backend="b") for i in range(queries.SEARCH_LIMIT + 5)
    )
    body = client.get("/api/dashboard/search", params={"q": "uqt_0"}).json()
    assert body["more"] is True and len(body["tasks"]) == queries.SEARCH_LIMIT
    assert body["tasks"][0]["task_id"] == "uqt_000"


def test_prefix_end_is_the_least_text_above_the_prefix() -> None:
    assert queries.prefix_end("uqt_ab") == "uqt_ac"
    assert queries.prefix_end("a\ud7ff") == "a\ue000"  # past the surrogates
    assert queries.prefix_end("a\U0010ffff") == "b"
    assert queries.prefix_end("\U0010ffff") is None
