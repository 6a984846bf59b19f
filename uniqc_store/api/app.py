"""The REST API (the ``api`` extra): the reference's routes over a TaskStore.

``create_app(store=None, *, allowed_hosts=None)`` returns a FastAPI app.
Credentials never leave through it: metadata, results and error messages in
every response (the dashboard's too) go through
:func:`uniqc_store.redaction.redact_record`. When ``UNIQC_STORE_API_TOKEN`` is
set, every request needs ``Authorization: Bearer <token>`` (see
:mod:`uniqc_store.api.auth`); the server answers only for the hosts it serves
and refuses writes another site could forge (see :mod:`uniqc_store.api.edge`);
bad input is a 422 and a failing database a 503, never a 500 (see
:mod:`uniqc_store.api.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query

from uniqc_store.api.auth import TOKEN_ENV, api_token, guard_every_path, token_dependency
from uniqc_store.api.bodies import (
    MAX_IDS,
    MAX_REPORTED_IDS,
    Archived,
    BulkArchived,
    BulkDeleted,
    Deleted,
    ExpiryReport,
    ExpiryRequest,
    Health,
    PurgeRequest,
    PurgeResult,
    Restored,
    ShardList,
    StatusCounts,
    TaskDetail,
    TaskIdsRequest,
    TaskPage,
    Version,
    expiry_report,
)
from uniqc_store.api.dashboard import is_public_path, mount_dashboard
from uniqc_store.api.edge import (
    ALLOWED_HOSTS_ENV,
    HostAllowlist,
    declare_edge_statuses,
    guard_cross_site,
    guard_hosts,
)
from uniqc_store.api.errors import (
    BackendQuery,
    HoursQuery,
    TaskIdPath,
    install_error_handlers,
    reject_unknown_query,
    responses,
)
from uniqc_store.api.listing import CursorQuery, TotalQuery, listed
from uniqc_store.api.metrics import METRICS_PATH, add_metrics_route
from uniqc_store.api.probes import (
    LIVE_PATH,
    READY_PATH,
    READY_SECONDS,
    probe_routes,
    ready_bound,
)
from uniqc_store.errors import StoreError, TaskConflictError
from uniqc_store.records import CURRENT_SCHEMA_VERSION, TaskInfo, TaskStatus
from uniqc_store.redaction import REDACTED, redact_record, redact_sensitive
from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.validation import INT_MAX, MAX_HOURS

MAX_LIMIT = 1000
#: The health probe: no token needed (it shows only "ok" or that the database is down).
HEALTH_PATH = "/api/health"
#: Paths that answer whatever the ``Host`` and without the token: orchestrators probe
#: with the pod's IP as the host, and without credentials.
PROBE_PATHS = frozenset({HEALTH_PATH, LIVE_PATH, READY_PATH})
__all__ = [
    "ALLOWED_HOSTS_ENV",
    "HEALTH_PATH",
    "LIVE_PATH",
    "MAX_HOURS",
    "MAX_IDS",
    "MAX_LIMIT",
    "MAX_REPORTED_IDS",
    "METRICS_PATH",
    "PROBE_PATHS",
    "READY_PATH",
    "READY_SECONDS",
    "REDACTED",
    "TOKEN_ENV",
    "create_app",
    "redact_sensitive",
]
logger = logging.getLogger(__name__)


_SUMMARY_FIELDS = (
    "task_id",
    "backend",
    "status",
    "shots",
    "submit_time",
    "update_time",
    "metadata",
    "error_message",
    "archived_at",
)


def _summary(info: TaskInfo) -> dict[str, Any]:
    record = redact_record({name: getattr(info, name) for name in _SUMMARY_FIELDS})
    return {**record, "has_result": info.result is not None}


def _detail(info: TaskInfo) -> dict[str, Any]:
    return redact_record(
        {**{name: getattr(info, name) for name in _SUMMARY_FIELDS}, "result": info.result}
    )


def _page(
    listing: tuple[list[TaskInfo], int | None, str | None], limit: int, offset: int
) -> dict[str, Any]:
    """The reference's listing shape (summaries, the total that matched, the paging),
    and the next page's cursor in cursor mode (``listing.py``)."""
    found, total, next_cursor = listing
    return {
        "tasks": [_summary(t) for t in found],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_cursor": next_cursor,
    }


def _not_found(task_id: str, what: str = "Task") -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} '{task_id}' not found")


def _already_archived(task_id: str) -> HTTPException:
    """The archive conflict, worded for REST callers (the library's names Python calls)."""
    return HTTPException(
        status_code=409,
        detail=f"task '{task_id}' is already in the archive; nothing was moved. "
        f"DELETE /api/archive/{task_id} to drop the archived copy and archive again, "
        f"or DELETE /api/tasks/{task_id} to drop the live task.",
    )


def _already_live(task_id: str) -> HTTPException:
    return HTTPException(
        status_code=409,
        detail=f"task '{task_id}' exists as a live task; nothing was moved. "
        f"DELETE /api/tasks/{task_id} to drop the live task, or DELETE /api/archive/{task_id} "
        "to drop the archived copy.",
    )


def _package_version() -> str:
    try:
        return package_version("uniqc-store")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")]
Offset = Annotated[int, Query(ge=0, le=INT_MAX)]


def create_app(
    store: TaskStore | None = None,
    *,
    allowed_hosts: Iterable[str] | None = None,
    ready_seconds: float = READY_SECONDS,
) -> FastAPI:
    """The REST app over ``store`` (default: ``TaskStore()`` as the contract resolves it).

    It answers for loopback names, the names in ``UNIQC_STORE_ALLOWED_HOSTS``
    (comma-separated) and ``allowed_hosts`` (names, IP addresses,
    ``*.example.com`` or ``*``); any other ``Host`` gets a 400, except on
    the probes (``/api/health``, ``/api/live``, ``/api/ready``), which need no
    token either. ``/api/ready`` answers 503 when the database does not answer
    within ``ready_seconds`` or is not at this code's schema version.
    ``/metrics`` has the store's figures for Prometheus (token and Host rules
    as ``/api``).

    Raises ``ValueError`` when ``UNIQC_STORE_API_TOKEN`` is set but unusable
    (empty, blank, not sendable in a header): the API never falls back to
    serving without authentication; and when an allowed host is no host name.
    There is no ``/docs`` page (its assets would come from a CDN): the OpenAPI
    document is at ``/openapi.json``.
    """
    token = api_token()
    hosts = HostAllowlist.configured(allowed_hosts)
    ready_seconds = ready_bound(ready_seconds)
    store = store if store is not None else TaskStore()
    app = FastAPI(
        title="uniqc-store",
        version=_package_version(),
        description="Tasks, shards and archive of a uniqc task store. "
        "Credentials in metadata, results and error messages are redacted.",
        redirect_slashes=False,  # a redirect is not an answer a client of this API expects
        docs_url=None,
        redoc_url=None,
        dependencies=[
            *([Depends(token_dependency(token))] if token is not None else []),
            Depends(reject_unknown_query),
        ],
    )
    # middleware runs from the last added: Host (400), then the token (401), then cross-site (403)
    guard_cross_site(app)
    if token is not None:
        guard_every_path(
            app, token, public=lambda path: path in PROBE_PATHS or is_public_path(path)
        )
    guard_hosts(app, hosts, any_host=PROBE_PATHS.__contains__)
    install_error_handlers(app, store.url)
    _service_routes(app, store, token is not None)
    app.router.routes.extend(probe_routes(store, ready_seconds).routes)  # no token
    add_metrics_route(app, store, token is not None)
    _task_routes(app, store, token is not None)
    _archive_routes(app, store, token is not None)
    mount_dashboard(app, store)
    declare_edge_statuses(app, any_host=PROBE_PATHS.__contains__)
    return app


def _service_routes(app: FastAPI, store: TaskStore, token: bool) -> None:
    """Health (public: a probe has no token) and version (behind the token, if any)."""
    public = APIRouter(dependencies=[Depends(reject_unknown_query)])

    @public.get(
        HEALTH_PATH,
        response_model=Health,
        responses=responses(token=False),
    )
    def health() -> Health:
        """Whether the server is up and its database answers a read (nothing is written)."""
        try:
            store.schema_version()
        except StoreError as exc:
            logger.warning("health check failed: %s", exc)
            raise HTTPException(
                status_code=503,
                detail=f"the task database cannot be reached ({type(exc).__name__}); "
                "see the server log",
            ) from None
        return Health(status="ok", database="reachable", dialect=store.dialect)

    app.router.routes.extend(public.routes)  # outside the app's dependencies: no token

    @app.get("/api/version", response_model=Version, responses=responses(token=token))
    def version() -> Version:
        """The package version, and the schema versions of the database and of this code."""
        return Version(
            version=_package_version(),
            schema_version=store.schema_version(),
            current_schema_version=CURRENT_SCHEMA_VERSION,
        )


def _task_routes(app: FastAPI, store: TaskStore, token: bool) -> None:
    """The live-task routes, each declaring the statuses it can answer with."""

    @app.get("/api/tasks", response_model=TaskPage, responses=responses(409, token=token))
    def list_tasks(
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: CursorQuery = None,
        total: TotalQuery = None,
    ) -> dict[str, Any]:
        """Live tasks, newest first, and how many match in all.

        By offset (each page pays for the rows it skips), or by cursor (``cursor=``
        for the first page, then each ``next_cursor``; ties by ``task_id``; counted
        only with ``total=true``): see the README's "The REST API".
        """
        filters = {"status": status, "backend": backend}
        paging = {"limit": limit, "offset": offset, "cursor": cursor, "total": total}
        listing = listed(store, archived=False, filters=filters, paging=paging)
        return _page(listing, limit, offset)

    @app.get("/api/tasks/counts", response_model=StatusCounts, responses=responses(token=token))
    def task_counts() -> dict[str, int]:
        """Live tasks per status, and the total."""
        by_status = store.tally().by_status()  # one read: the figures agree with each other
        counts = {s.value: by_status.get(s.value, 0) for s in TaskStatus}
        return {**counts, "total": sum(counts.values())}

    @app.post(
        "/api/tasks/bulk-delete", response_model=BulkDeleted, responses=responses(400, token=token)
    )
    def bulk_delete(payload: TaskIdsRequest) -> dict[str, Any]:
        """Delete live tasks by id (any body field but ``task_ids`` is a 422).

        Set-based, 100 distinct ids per transaction: a failure part-way is a 503
        whose ``report`` says what the transactions before it deleted.
        """
        outcome = store.delete_many(payload.task_ids)
        return {**outcome, "count": len(outcome["deleted"])}

    @app.post(
        "/api/tasks/bulk-archive",
        response_model=BulkArchived,
        responses=responses(400, token=token),
    )
    def bulk_archive(payload: TaskIdsRequest) -> dict[str, Any]:
        """Archive live tasks by id; ids already archived are reported as conflicts.

        Set-based, 100 distinct ids per transaction: a failure part-way is a 503
        whose ``report`` says what the transactions before it archived.
        """
        outcome = store.archive_many(payload.task_ids)
        return {**outcome, "count": len(outcome["archived"])}

    @app.post(
        "/api/tasks/archive-expired",
        response_model=ExpiryReport,
        responses=responses(400, token=token),
    )
    def archive_expired(
        hours: HoursQuery = 72,
        terminal_only: bool = True,
        body: Annotated[ExpiryRequest | None, Body()] = None,
    ) -> ExpiryReport:
        """Archive tasks not updated for ``hours`` (terminal ones only, by default).

        ``hours`` / ``terminal_only`` come as query parameters or in a JSON
        body; a field given in the body wins over the same query parameter
        (a query cannot say that both are refused, so the document stays
        exact). Each id list of the report is cut at 1,000 ids; the counts
        are complete.
        """
        if body is not None:
            given = body.model_fields_set
            hours = body.hours if "hours" in given else hours
            terminal_only = body.terminal_only if "terminal_only" in given else terminal_only
        return expiry_report(store.archive_expired(hours=hours, terminal_only=terminal_only))

    @app.get(
        "/api/tasks/{task_id}",
        response_model=TaskDetail,
        responses=responses(404, 409, token=token),
    )
    def get_task(task_id: TaskIdPath) -> dict[str, Any]:
        """One live task with its result."""
        info = store.get(task_id)
        if info is None:
            raise _not_found(task_id)
        return _detail(info)

    @app.get(
        "/api/tasks/{task_id}/shards",
        response_model=ShardList,
        responses=responses(404, 409, token=token),
    )
    def get_task_shards(task_id: TaskIdPath) -> dict[str, Any]:
        """The platform jobs of a live task (without their result payloads)."""
        if store.get(task_id) is None:
            raise _not_found(task_id)
        shards = store.get_shards(task_id)
        rows = [
            redact_record({k: v for k, v in s.to_dict().items() if k != "result"}) for s in shards
        ]
        return {"task_id": task_id, "shard_count": len(rows), "shards": rows}

    @app.delete(
        "/api/tasks/{task_id}", response_model=Deleted, responses=responses(404, token=token)
    )
    def delete_task(task_id: TaskIdPath) -> dict[str, str]:
        """Delete a live task and its shards."""
        if not store.delete(task_id):
            raise _not_found(task_id)
        return {"deleted": task_id}

    @app.post(
        "/api/tasks/{task_id}/archive",
        response_model=Archived,
        responses=responses(404, 409, token=token),
    )
    def archive_task(task_id: TaskIdPath) -> dict[str, str]:
        """Move a live task and its shards to the archive (409 if the id is archived already)."""
        try:
            moved = store.archive_task(task_id)
        except TaskConflictError:
            raise _already_archived(task_id) from None
        if not moved:
            raise _not_found(task_id)
        return {"archived": task_id}


def _archive_routes(app: FastAPI, store: TaskStore, token: bool) -> None:
    """The archive routes, each declaring the statuses it can answer with."""

    @app.get("/api/archive", response_model=TaskPage, responses=responses(409, token=token))
    def list_archived(
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: CursorQuery = None,
        total: TotalQuery = None,
    ) -> dict[str, Any]:
        """Archived tasks, newest first, and how many match in all (by offset or by
        cursor, as ``GET /api/tasks``)."""
        filters = {"status": status, "backend": backend}
        paging = {"limit": limit, "offset": offset, "cursor": cursor, "total": total}
        listing = listed(store, archived=True, filters=filters, paging=paging)
        return _page(listing, limit, offset)

    # before /api/archive/{task_id}: a literal path is matched (and documented) first
    @app.post("/api/archive/purge", response_model=PurgeResult, responses=responses(token=token))
    def purge(body: Annotated[PurgeRequest, Body()]) -> PurgeResult:
        """Delete archived tasks archived more than ``older_than_hours`` ago, with their
        archived shards, for good; the ``keep_last`` newest archived tasks stay.

        ``dry_run: true`` deletes nothing and reports what is due. Each batch is
        one transaction: a failure part-way is a 503 whose ``report`` says what the
        batches before it deleted.
        """
        report = store.purge_archived(
            older_than_hours=body.older_than_hours,
            keep_last=body.keep_last,
            batch_size=body.batch_size,
            dry_run=body.dry_run,
        )
        return PurgeResult(**report.as_dict())

    @app.get(
        "/api/archive/{task_id}",
        response_model=TaskDetail,
        responses=responses(404, 409, token=token),
    )
    def get_archived(task_id: TaskIdPath) -> dict[str, Any]:
        """One archived task with its result."""
        info = store.get_archived(task_id)
        if info is None:
            raise _not_found(task_id, "Archived task")
        return _detail(info)

    @app.delete(
        "/api/archive/{task_id}", response_model=Deleted, responses=responses(404, token=token)
    )
    def delete_archived(task_id: TaskIdPath) -> dict[str, str]:
        """Delete an archived task and its archived shards."""
        if not store.delete_archived(task_id):
            raise _not_found(task_id, "Archived task")
        return {"deleted": task_id}

    @app.post(
        "/api/archive/restore/{task_id}",
        response_model=Restored,
        responses=responses(404, 409, token=token),
    )
    def restore(task_id: TaskIdPath) -> dict[str, str]:
        """Move an archived task back to the live tasks (409 if the id is live already)."""
        try:
            moved = store.restore_task(task_id)
        except TaskConflictError:
            raise _already_live(task_id) from None
        if not moved:
            raise _not_found(task_id, "Archived task")
        return {"restored": task_id}
