"""The task dashboard: a static page at ``/`` and the few JSON routes it needs.

The page (HTML, CSS and JavaScript modules in ``static/``, no build step, no
CDN) is served without a token: it holds no data. Everything it shows comes
from ``/api`` routes, which need ``Authorization: Bearer <token>`` when
``UNIQC_STORE_API_TOKEN`` is set; the routes here check the token themselves
too, so they stay closed whatever middleware the app has. Live updates come
from ``/api/events``, a Server-Sent Events stream the page reads with
``fetch()`` so the token travels in the header, never in a URL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ..changes import ChangeFeed, open_signal
from ..engine import redact
from ..records import CURRENT_SCHEMA_VERSION, TaskInfo, TaskShard, TaskStatus
from ..store import TaskStore
from . import queries

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

Redactor = Callable[[Any], Any]


def is_public_path(path: str) -> bool:
    """The page and its assets: served without a token because they hold no data."""
    return path == "/" or path.startswith(ASSETS_PREFIX)


def close_streams(app: FastAPI) -> None:
    """End the open ``/api/events`` streams, so a server can stop without waiting on tabs."""
    feed = getattr(app.state, "change_feed", None)
    if isinstance(feed, ChangeFeed):
        feed.close()


def mount_dashboard(app: FastAPI, store: TaskStore, *, redact_sensitive: Redactor) -> None:
    """Serve the page at ``/`` and add the dashboard's routes under ``/api``.

    ``redact_sensitive`` is applied to every metadata and result shown, as in
    the REST API. The routes under ``/api`` get the app's own dependencies (the
    bearer token when one is set); the page is a plain Starlette route, outside
    them, because it holds no data.
    """

    async def index(_request: Request) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.add_route("/", index, methods=["GET"], include_in_schema=False)

    app.mount(ASSETS_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="dashboard")
    feed = ChangeFeed(lambda: open_signal(store))
    app.state.change_feed = feed
    # The page's own routes: not part of the REST contract, so not in the OpenAPI document.
    router = APIRouter(prefix="/api", include_in_schema=False)
    _add_reads(router, store, redact_sensitive)
    _add_events(router, feed)
    app.include_router(router)


Which = Annotated[queries.TableName, Query(description="live tasks or the archive")]


def _add_reads(router: APIRouter, store: TaskStore, redact_sensitive: Redactor) -> None:
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
        backend: str | None = None,
        order: queries.Order = "newest",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of task summaries (keyset paging) and how many match in all."""
        status_value = status.value if status is not None else None
        try:
            found = queries.page(
                store,
                table,
                status=status_value,
                backend=backend,
                order=order,
                limit=limit,
                cursor=cursor,
            )
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
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
    def task(task_id: str) -> dict[str, Any]:
        """One task, live or archived, with its shards; credentials redacted."""
        found = store._locate(task_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"Task '{task_id}' not found")
        info, shards, archived = found
        return {
            "task": _redacted_task(info, redact_sensitive),
            "shards": [_redacted_shard(s, redact_sensitive) for s in shards],
            "archived": archived,
        }

    @router.get("/dashboard/expired")
    def expired(
        hours: Annotated[float, Query(ge=0, le=1e6)] = 72, terminal_only: bool = True
    ) -> dict[str, Any]:
        """The dry run of ``POST /api/tasks/archive-expired``: what it would archive now."""
        ids = store.expired_task_ids(hours, terminal_only)
        return {
            "count": len(ids),
            "task_ids": ids[:DRY_RUN_IDS],
            "hours": hours,
            "terminal_only": terminal_only,
        }


def _redacted_task(info: TaskInfo, redact_sensitive: Redactor) -> dict[str, Any]:
    record = info.to_dict()
    record["metadata"] = redact_sensitive(record["metadata"])
    record["result"] = redact_sensitive(record["result"])
    return record


def _redacted_shard(shard: TaskShard, redact_sensitive: Redactor) -> dict[str, Any]:
    record = shard.to_dict()
    record["result"] = redact_sensitive(record["result"])
    return record


def _add_events(router: APIRouter, feed: ChangeFeed) -> None:
    @router.get("/events", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        """Server-Sent Events: ``change`` when the tasks change, a comment every 15 s."""
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
