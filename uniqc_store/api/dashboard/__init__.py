"""The task dashboard: a static page at ``/`` and the few JSON routes it needs.

The page (HTML, CSS and JavaScript modules in ``static/``, no build step, no
CDN) is served without a token: it holds no data. It names its assets and the
API by relative URLs, so it works under a mount, a ``root_path`` or a proxy's
path prefix. Everything it shows comes from ``/api`` routes, which need
``Authorization: Bearer <token>`` when ``UNIQC_STORE_API_TOKEN`` is set; the
routes here check the token themselves too, so they stay closed whatever
middleware the app has. They follow the REST routes' rules: the same input
types and error statuses (:mod:`uniqc_store.api.errors`) and the same
redaction (:func:`uniqc_store.redaction.redact_record`). Live updates come
from ``/api/events``, a Server-Sent Events stream the page reads with
``fetch()`` so the token travels in the header, never in a URL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator

from uniqc_store.api.dashboard import queries
from uniqc_store.api.errors import (
    MAX_TEXT,
    TEXT_SCHEMA,
    BackendQuery,
    HoursQuery,
    TaskIdPath,
    storable,
)
from uniqc_store.db.urls import redact
from uniqc_store.records import CURRENT_SCHEMA_VERSION, TaskStatus
from uniqc_store.redaction import redact_record
from uniqc_store.repository.changes import ChangeFeed, open_signal
from uniqc_store.repository.store import TaskStore

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PREFIX = "/dashboard/"
HEARTBEAT_SECONDS = 15.0
MAX_PAGE = 200
DRY_RUN_IDS = 200
#: The page loads only its own files and talks only to its own origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public_path(path: str) -> bool:
    """The page and its assets: served without a token because they hold no data."""
    return path == "/" or path.startswith(ASSETS_PREFIX)


def close_streams(app: FastAPI) -> None:
    """End the open ``/api/events`` streams, so a server can stop without waiting on tabs."""
    feed = getattr(app.state, "change_feed", None)
    if isinstance(feed, ChangeFeed):
        feed.close()


def mount_dashboard(app: FastAPI, store: TaskStore) -> None:
    """Serve the page at ``/`` and add the dashboard's routes under ``/api``.

    The routes under ``/api`` get the app's own dependencies (the bearer token
    when one is set, unknown query parameters refused) and its error handlers;
    the page is a plain Starlette route, outside them, because it holds no data.
    """

    async def index(_request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.add_route("/", index, methods=["GET"], include_in_schema=False)

    app.mount(ASSETS_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="dashboard")
    feed = ChangeFeed(lambda: open_signal(store))
    app.state.change_feed = feed
    # The page's own routes: not part of the REST contract, so not in the OpenAPI document.
    router = APIRouter(prefix="/api", include_in_schema=False)
    _add_reads(router, store)
    _add_events(router, store, feed)
    app.include_router(router)


Which = Annotated[queries.TableName, Query(description="live tasks or the archive")]


def _page_cursor(cursor: str) -> str:
    """A cursor we made, holding text every engine can compare (a 422 otherwise)."""
    for part in queries.decode_cursor(cursor):
        storable(part)
    return cursor


Cursor = Annotated[
    str | None,
    Query(max_length=4 * MAX_TEXT, json_schema_extra=TEXT_SCHEMA),
    AfterValidator(lambda c: None if c is None else _page_cursor(c)),
]


SearchQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_TEXT,
        json_schema_extra=TEXT_SCHEMA,
        description="A task id or its start, or a platform task id (exact).",
    ),
    AfterValidator(storable),
]


def _add_reads(router: APIRouter, store: TaskStore) -> None:
    @router.get("/dashboard/info")
    def info() -> dict[str, Any]:
        """What the footer shows: the schema version and the database (password masked)."""
        return {
            "schema_version": store.schema_version(),
            "current_schema_version": CURRENT_SCHEMA_VERSION,
            "database": redact(store.url),
            "dialect": store.engine.dialect.name,
        }

    @router.get("/dashboard/tasks")
    def task_page(
        table: Which = "live",
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        order: queries.Order = "newest",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """One page of task summaries (keyset paging) and how many match in all."""
        status_value = status.value if status is not None else None
        found = queries.page(
            store,
            table,
            status=status_value,
            backend=backend,
            order=order,
            limit=limit,
            cursor=cursor,
        )
        counter = store.count if table == "live" else store.count_archived
        total = counter(status=status_value, backend=backend)
        return {"tasks": found.rows, "total": total, "next_cursor": found.next_cursor}

    @router.get("/dashboard/counts")
    def counts(table: Which = "live") -> dict[str, Any]:
        """Tasks per status and per backend, for the charts."""
        by = queries.counts(store, table)
        by["status"] = {**{s.value: 0 for s in TaskStatus}, **by["status"]}
        return {**by, "total": sum(by["status"].values())}

    @router.get("/dashboard/task/{task_id}")
    def task(task_id: TaskIdPath) -> dict[str, Any]:
        """One task, live or archived, with its shards; credentials redacted."""
        found = store._locate(task_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"Task '{task_id}' not found")
        info, shards, archived = found
        return {
            "task": redact_record(info.to_dict()),
            "shards": [redact_record(s.to_dict()) for s in shards],
            "archived": archived,
        }

    @router.get("/dashboard/search")
    def search(q: SearchQuery) -> dict[str, Any]:
        """Tasks, live and archived, whose id starts with ``q`` or with a shard whose
        platform id is ``q`` (at most ``SEARCH_LIMIT`` per table and kind of match)."""
        found = queries.search(store, q)
        return {"tasks": found.rows, "more": found.more, "limit": queries.SEARCH_LIMIT}

    @router.get("/dashboard/expired")
    def expired(hours: HoursQuery = 72, terminal_only: bool = True) -> dict[str, Any]:
        """The dry run of ``POST /api/tasks/archive-expired``: what it would archive now."""
        ids = store.expired_task_ids(hours, terminal_only)
        return {
            "count": len(ids),
            "task_ids": ids[:DRY_RUN_IDS],
            "hours": hours,
            "terminal_only": terminal_only,
        }


def _add_events(router: APIRouter, store: TaskStore, feed: ChangeFeed) -> None:
    @router.get("/events", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        """Server-Sent Events: ``change`` when the tasks change, a comment every 15 s.

        The database is read once first, so a stream opened while it is down is a
        503 like every other route (once open, the feed waits for it to come back).
        """
        await anyio.to_thread.run_sync(store.schema_version)
        return StreamingResponse(
            _event_stream(feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def _event_stream(feed: ChangeFeed) -> AsyncIterator[str]:
    async for event in feed.listen(HEARTBEAT_SECONDS):
        if event == "ready":  # changes from here on are announced: the page reloads its data
            yield "retry: 3000\nevent: ready\ndata: {}\n\n"
        elif event == "change":
            yield f"event: change\ndata: {json.dumps({'generation': feed.generation})}\n\n"
        else:
            yield ": heartbeat\n\n"
