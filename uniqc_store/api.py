"""The REST API (the ``api`` extra): the reference's routes over a TaskStore.

``create_app(store=None)`` returns a FastAPI app. Credentials never leave
through it: every metadata and result in a response goes through
:func:`redact_sensitive`. When ``UNIQC_STORE_API_TOKEN`` is set, every route
needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from .errors import TaskConflictError
from .records import TaskInfo, TaskStatus
from .redaction import REDACTED, redact_record, redact_sensitive
from .store import TaskStore

TOKEN_ENV = "UNIQC_STORE_API_TOKEN"
MAX_LIMIT = 1000
__all__ = ["REDACTED", "create_app", "redact_sensitive"]


class TaskIdsRequest(BaseModel):
    """A list of task ids for the bulk routes."""

    task_ids: list[str] = Field(default_factory=list, max_length=10_000)


def _summary(info: TaskInfo) -> dict[str, Any]:
    return {
        "task_id": info.task_id,
        "backend": info.backend,
        "status": info.status,
        "shots": info.shots,
        "submit_time": info.submit_time,
        "update_time": info.update_time,
        "has_result": info.result is not None,
        "metadata": redact_sensitive(info.metadata),
        "error_message": redact_sensitive(info.error_message),
        "archived_at": info.archived_at,
    }


def _detail(info: TaskInfo) -> dict[str, Any]:
    summary = _summary(info)
    del summary["has_result"]
    return {**summary, "result": redact_sensitive(info.result)}


def _page(found: list[TaskInfo], total: int, limit: int, offset: int) -> dict[str, Any]:
    """The reference's listing shape: summaries, the total that matched, the paging."""
    return {"tasks": [_summary(t) for t in found], "total": total, "limit": limit, "offset": offset}


def _not_found(task_id: str, what: str = "Task") -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} '{task_id}' not found")


def _authorised(request: Request, expected: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


def _require_token(app: FastAPI, expected: str) -> None:
    """Every request (the OpenAPI document and docs included) needs the bearer token."""

    @app.middleware("http")
    async def check(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not _authorised(request, expected):
            return JSONResponse(
                status_code=401,
                content={"detail": "missing or wrong bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)


Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


def create_app(store: TaskStore | None = None) -> FastAPI:
    """The REST app over ``store`` (default: ``TaskStore()`` as the contract resolves it)."""
    store = store if store is not None else TaskStore()
    token = os.environ.get(TOKEN_ENV) or None
    app = FastAPI(
        title="uniqc-store", description="Tasks, shards and archive of a uniqc task store."
    )
    if token is not None:
        _require_token(app, token)

    @app.exception_handler(TaskConflictError)
    async def conflict(_request: Request, exc: TaskConflictError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.get("/api/tasks")
    def list_tasks(
        status: TaskStatus | None = None,
        backend: str | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Live tasks, newest first, and how many match in all."""
        found = store.list(status=status, backend=backend, limit=limit, offset=offset)
        return _page(found, store.count(status=status, backend=backend), limit, offset)

    @app.get("/api/tasks/counts")
    def task_counts() -> dict[str, int]:
        """Live tasks per status, and the total."""
        counts = {s.value: store.count(status=s) for s in TaskStatus}
        return {**counts, "total": sum(counts.values())}

    @app.post("/api/tasks/bulk-delete")
    def bulk_delete(payload: TaskIdsRequest) -> dict[str, Any]:
        """Delete live tasks by id."""
        deleted = [t for t in payload.task_ids if store.delete(t)]
        missing = [t for t in payload.task_ids if t not in set(deleted)]
        return {"deleted": deleted, "missing": missing, "count": len(deleted)}

    @app.post("/api/tasks/bulk-archive")
    def bulk_archive(payload: TaskIdsRequest) -> dict[str, Any]:
        """Archive live tasks by id; ids already archived are reported as conflicts."""
        archived: list[str] = []
        missing: list[str] = []
        conflicts: list[str] = []
        for task_id in payload.task_ids:
            try:
                (archived if store.archive_task(task_id) else missing).append(task_id)
            except TaskConflictError:
                conflicts.append(task_id)
        return {
            "archived": archived,
            "missing": missing,
            "conflicts": conflicts,
            "count": len(archived),
        }

    @app.post("/api/tasks/archive-expired")
    def archive_expired(
        hours: Annotated[float, Query(ge=0, le=1e6)] = 72, terminal_only: bool = True
    ) -> dict[str, Any]:
        """Archive tasks not updated for ``hours`` (terminal ones only, by default)."""
        return store.archive_expired(hours=hours, terminal_only=terminal_only)

    @app.get("/api/tasks/{task_id}")
    def get_task(task_id: str) -> dict[str, Any]:
        """One live task with its result."""
        info = store.get(task_id)
        if info is None:
            raise _not_found(task_id)
        return _detail(info)

    @app.get("/api/tasks/{task_id}/shards")
    def get_task_shards(task_id: str) -> dict[str, Any]:
        """The platform jobs of a live task (without their result payloads)."""
        if store.get(task_id) is None:
            raise _not_found(task_id)
        shards = store.get_shards(task_id)
        rows = [
            redact_record({k: v for k, v in s.to_dict().items() if k != "result"}) for s in shards
        ]
        return {"task_id": task_id, "shard_count": len(rows), "shards": rows}

    @app.delete("/api/tasks/{task_id}")
    def delete_task(task_id: str) -> dict[str, str]:
        """Delete a live task and its shards."""
        if not store.delete(task_id):
            raise _not_found(task_id)
        return {"deleted": task_id}

    @app.post("/api/tasks/{task_id}/archive")
    def archive_task(task_id: str) -> dict[str, str]:
        """Move a live task and its shards to the archive."""
        if not store.archive_task(task_id):
            raise _not_found(task_id)
        return {"archived": task_id}

    @app.get("/api/archive")
    def list_archived(
        status: TaskStatus | None = None,
        backend: str | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Archived tasks, newest first, and how many match in all."""
        found = store.list_archived(status=status, backend=backend, limit=limit, offset=offset)
        return _page(found, store.count_archived(status=status, backend=backend), limit, offset)

    @app.get("/api/archive/{task_id}")
    def get_archived(task_id: str) -> dict[str, Any]:
        """One archived task with its result."""
        info = store.get_archived(task_id)
        if info is None:
            raise _not_found(task_id, "Archived task")
        return _detail(info)

    @app.delete("/api/archive/{task_id}")
    def delete_archived(task_id: str) -> dict[str, str]:
        """Delete an archived task and its archived shards."""
        if not store.delete_archived(task_id):
            raise _not_found(task_id, "Archived task")
        return {"deleted": task_id}

    @app.post("/api/archive/restore/{task_id}")
    def restore(task_id: str) -> dict[str, str]:
        """Move an archived task back to the live tasks."""
        if not store.restore_task(task_id):
            raise _not_found(task_id, "Archived task")
        return {"restored": task_id}

    return app
