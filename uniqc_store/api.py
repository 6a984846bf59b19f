"""The REST API (the ``api`` extra): the reference's routes over a TaskStore.

``create_app(store=None)`` returns a FastAPI app. Credentials never leave
through it: metadata, results and error messages in every response go
through :mod:`uniqc_store.redaction`. When ``UNIQC_STORE_API_TOKEN`` is set,
every request needs ``Authorization: Bearer <token>`` (see
:mod:`uniqc_store.api_auth`); bad input is a 422, never a 500 (see
:mod:`uniqc_store.api_errors`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from .api_auth import TOKEN_ENV, api_token, guard_every_path, token_dependency
from .api_errors import (
    MAX_TEXT,
    TEXT_SCHEMA,
    BackendQuery,
    StorableText,
    TaskIdPath,
    install_error_handlers,
    reject_unknown_query,
    responses,
)
from .dashboard import is_public_path, mount_dashboard
from .errors import TaskConflictError
from .records import TaskInfo, TaskStatus
from .redaction import REDACTED, redact_record, redact_sensitive
from .store import TaskStore

MAX_LIMIT = 1000
MAX_IDS = 10_000
#: The store refuses ``hours >= 1e6`` (``archive.cutoff_for``); the route's bound is the same.
MAX_HOURS = 1e6
__all__ = ["MAX_LIMIT", "REDACTED", "TOKEN_ENV", "create_app", "redact_sensitive"]


class TaskIdsRequest(BaseModel):
    """A list of task ids for the bulk routes; any other field is refused."""

    model_config = ConfigDict(extra="forbid")

    task_ids: list[
        Annotated[
            StorableText, Field(min_length=1, max_length=MAX_TEXT, json_schema_extra=TEXT_SCHEMA)
        ]
    ] = Field(default_factory=list, max_length=MAX_IDS)


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


Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


def create_app(store: TaskStore | None = None) -> FastAPI:
    """The REST app over ``store`` (default: ``TaskStore()`` as the contract resolves it).

    Raises ``ValueError`` when ``UNIQC_STORE_API_TOKEN`` is set but unusable
    (empty, blank, not sendable in a header): the API never falls back to
    serving without authentication.
    """
    token = api_token()
    store = store if store is not None else TaskStore()
    app = FastAPI(
        title="uniqc-store",
        description="Tasks, shards and archive of a uniqc task store. "
        "Credentials in metadata, results and error messages are redacted.",
        redirect_slashes=False,  # a redirect is not an answer a client of this API expects
        dependencies=[
            *([Depends(token_dependency(token))] if token is not None else []),
            Depends(reject_unknown_query),
        ],
    )
    if token is not None:
        guard_every_path(app, token, public=is_public_path)
    install_error_handlers(app)
    _task_routes(app, store, token is not None)
    _archive_routes(app, store, token is not None)
    mount_dashboard(app, store, redact_sensitive=redact_sensitive)
    return app


def _task_routes(app: FastAPI, store: TaskStore, token: bool) -> None:
    """The live-task routes, each declaring the statuses it can answer with."""

    @app.get("/api/tasks", responses=responses(token=token))
    def list_tasks(
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Live tasks, newest first, and how many match in all."""
        found = store.list(status=status, backend=backend, limit=limit, offset=offset)
        return _page(found, store.count(status=status, backend=backend), limit, offset)

    @app.get("/api/tasks/counts", responses=responses(token=token))
    def task_counts() -> dict[str, int]:
        """Live tasks per status, and the total."""
        counts = {s.value: store.count(status=s) for s in TaskStatus}
        return {**counts, "total": sum(counts.values())}

    @app.post("/api/tasks/bulk-delete", responses=responses(400, token=token))
    def bulk_delete(payload: TaskIdsRequest) -> dict[str, Any]:
        """Delete live tasks by id."""
        deleted = [t for t in payload.task_ids if store.delete(t)]
        missing = [t for t in payload.task_ids if t not in set(deleted)]
        return {"deleted": deleted, "missing": missing, "count": len(deleted)}

    @app.post("/api/tasks/bulk-archive", responses=responses(400, token=token))
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

    @app.post("/api/tasks/archive-expired", responses=responses(token=token))
    def archive_expired(
        hours: Annotated[
            float,
            Query(ge=0, lt=MAX_HOURS, allow_inf_nan=False, description="Age in hours, < 1e6."),
        ] = 72,
        terminal_only: bool = True,
    ) -> dict[str, Any]:
        """Archive tasks not updated for ``hours`` (terminal ones only, by default)."""
        return store.archive_expired(hours=hours, terminal_only=terminal_only)

    @app.get("/api/tasks/{task_id}", responses=responses(404, token=token))
    def get_task(task_id: TaskIdPath) -> dict[str, Any]:
        """One live task with its result."""
        info = store.get(task_id)
        if info is None:
            raise _not_found(task_id)
        return _detail(info)

    @app.get("/api/tasks/{task_id}/shards", responses=responses(404, token=token))
    def get_task_shards(task_id: TaskIdPath) -> dict[str, Any]:
        """The platform jobs of a live task (without their result payloads)."""
        if store.get(task_id) is None:
            raise _not_found(task_id)
        shards = store.get_shards(task_id)
        rows = [
            redact_record({k: v for k, v in s.to_dict().items() if k != "result"}) for s in shards
        ]
        return {"task_id": task_id, "shard_count": len(rows), "shards": rows}

    @app.delete("/api/tasks/{task_id}", responses=responses(404, token=token))
    def delete_task(task_id: TaskIdPath) -> dict[str, str]:
        """Delete a live task and its shards."""
        if not store.delete(task_id):
            raise _not_found(task_id)
        return {"deleted": task_id}

    @app.post("/api/tasks/{task_id}/archive", responses=responses(404, 409, token=token))
    def archive_task(task_id: TaskIdPath) -> dict[str, str]:
        """Move a live task and its shards to the archive (409 if the id is archived already)."""
        if not store.archive_task(task_id):
            raise _not_found(task_id)
        return {"archived": task_id}


def _archive_routes(app: FastAPI, store: TaskStore, token: bool) -> None:
    """The archive routes, each declaring the statuses it can answer with."""

    @app.get("/api/archive", responses=responses(token=token))
    def list_archived(
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Archived tasks, newest first, and how many match in all."""
        found = store.list_archived(status=status, backend=backend, limit=limit, offset=offset)
        return _page(found, store.count_archived(status=status, backend=backend), limit, offset)

    @app.get("/api/archive/{task_id}", responses=responses(404, token=token))
    def get_archived(task_id: TaskIdPath) -> dict[str, Any]:
        """One archived task with its result."""
        info = store.get_archived(task_id)
        if info is None:
            raise _not_found(task_id, "Archived task")
        return _detail(info)

    @app.delete("/api/archive/{task_id}", responses=responses(404, token=token))
    def delete_archived(task_id: TaskIdPath) -> dict[str, str]:
        """Delete an archived task and its archived shards."""
        if not store.delete_archived(task_id):
            raise _not_found(task_id, "Archived task")
        return {"deleted": task_id}

    @app.post("/api/archive/restore/{task_id}", responses=responses(404, 409, token=token))
    def restore(task_id: TaskIdPath) -> dict[str, str]:
        """Move an archived task back to the live tasks (409 if the id is live already)."""
        if not store.restore_task(task_id):
            raise _not_found(task_id, "Archived task")
        return {"restored": task_id}
