"""The typed bodies of the REST API, so the OpenAPI document says what every route returns.

Payloads (``metadata``, ``result``) are any JSON value: they are the caller's own
data, redacted, and a row another tool wrote may hold a non-object or the
``{"_invalid_json": "..."}`` marker. ``status`` is plain text for the same reason
(a row written by another tool may carry a status this package does not know).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from uniqc_store.api.errors import MAX_TEXT, TEXT_SCHEMA, StorableText
from uniqc_store.schema.validation import INT_MAX, MAX_BATCH_SIZE, MAX_HOURS

#: The most ids ``archive-expired`` lists per kind; the counts are always complete.
MAX_REPORTED_IDS = 1000
MAX_IDS = 10_000

Json = Annotated[Any, Field(description="Any JSON value (credentials redacted).")]


class TaskIdsRequest(BaseModel):
    """A list of task ids for the bulk routes; any other field is refused."""

    model_config = ConfigDict(extra="forbid")

    task_ids: list[
        Annotated[
            StorableText, Field(min_length=1, max_length=MAX_TEXT, json_schema_extra=TEXT_SCHEMA)
        ]
    ] = Field(default_factory=list, max_length=MAX_IDS)


class ExpiryRequest(BaseModel):
    """The optional JSON body of ``archive-expired``: its fields win over the query's.

    Strict, as its schema says: ``"5"`` is not a number and ``0`` not a boolean.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    hours: float = Field(
        72, ge=0, lt=MAX_HOURS, allow_inf_nan=False, description=f"Age in hours, < {MAX_HOURS:g}."
    )
    terminal_only: bool = Field(True, description="Leave pending and running tasks alone.")


def _whole(value: Any) -> Any:
    """JSON's ``5.0`` is the integer 5 (JSON Schema's ``integer`` takes it); ``5.5``,
    ``"5"`` and ``true`` stay refused by the strict check after this."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A strict int that takes a JSON number with no fractional part, as the schema says.
WholeNumber = Annotated[int, BeforeValidator(_whole)]


class PurgeRequest(BaseModel):
    """The JSON body of ``POST /api/archive/purge``: strict, any other field refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    older_than_hours: float = Field(
        ge=0,
        lt=MAX_HOURS,
        allow_inf_nan=False,
        description=f"Age since archiving, in hours, < {MAX_HOURS:g}.",
    )
    keep_last: WholeNumber = Field(
        0, ge=0, le=INT_MAX, description="Always keep this many newest archived tasks."
    )
    batch_size: WholeNumber = Field(
        1000, ge=1, le=MAX_BATCH_SIZE, description="Archived tasks deleted per transaction."
    )
    dry_run: bool = Field(False, description="Only report what would be deleted.")


class PurgeResult(BaseModel):
    """What a purge deleted (``dry_run``: would delete). ``task_ids`` names at most
    1,000 ids (``ids_complete`` says whether all); the counts are complete."""

    older_than_hours: float
    keep_last: int
    dry_run: bool
    tasks: int = Field(description="Archived tasks deleted (or due).")
    shards: int = Field(description="Archived shards deleted with them (or due).")
    batches: int = Field(description="Transactions that deleted (or would delete) something.")
    task_ids: list[str]
    ids_complete: bool


class TaskSummary(BaseModel):
    """A task in a listing: no result, only whether it has one."""

    task_id: str
    backend: str
    status: str = Field(description="pending, running, success, failed or cancelled.")
    shots: int
    submit_time: str = Field(description="ISO-8601 text, as stored.")
    update_time: str = Field(description="ISO-8601 text, as stored.")
    has_result: bool
    metadata: Json
    error_message: str | None
    archived_at: str | None = Field(description="When it was archived; null for a live task.")


class TaskDetail(BaseModel):
    """One task with its result."""

    task_id: str
    backend: str
    status: str = Field(description="pending, running, success, failed or cancelled.")
    shots: int
    submit_time: str
    update_time: str
    metadata: Json
    error_message: str | None
    archived_at: str | None
    result: Json


class TaskPage(BaseModel):
    """One page of a listing, how many tasks match in all, and the next page's cursor."""

    tasks: list[TaskSummary]
    total: int | None = Field(
        description="How many tasks match in all; null when not counted (cursor pages "
        "count only with total=true, offset pages unless total=false)."
    )
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="Cursor pages: the cursor of the next page, null after the last one. "
        "Always null for offset pages."
    )


class StatusCounts(BaseModel):
    """Live tasks per status, and their total."""

    pending: int
    running: int
    success: int
    failed: int
    cancelled: int
    total: int


class Shard(BaseModel):
    """One platform job of a task (without its result payload)."""

    uniqc_task_id: str
    shard_index: int
    platform_task_id: str
    backend: str
    circuit_count: int
    sub_index_offset: int
    status: str
    error_message: str | None
    submit_time: str
    update_time: str


class ShardList(BaseModel):
    """The shards of a live task, by index."""

    task_id: str
    shard_count: int
    shards: list[Shard]


class BulkDeleted(BaseModel):
    deleted: list[str]
    missing: list[str]
    count: int


class BulkArchived(BaseModel):
    archived: list[str]
    missing: list[str]
    conflicts: list[str] = Field(description="Ids already in the archive: nothing was moved.")
    count: int


class ExpiryReport(BaseModel):
    """What ``archive-expired`` did. Each id list holds at most 1,000 ids (in id
    order); its ``*_count`` is complete and ``*_truncated`` says whether ids were
    left out."""

    archived: list[str]
    count: int = Field(description="How many tasks were archived.")
    archived_truncated: bool
    hours: float
    terminal_only: bool
    skipped_running: list[str]
    skipped_running_count: int
    skipped_running_truncated: bool
    skipped_conflicts: list[str]
    skipped_conflicts_count: int
    skipped_conflicts_truncated: bool


class Deleted(BaseModel):
    deleted: str


class Archived(BaseModel):
    archived: str


class Restored(BaseModel):
    restored: str


class Health(BaseModel):
    """The server is up and its database answers."""

    status: str = Field(description='Always "ok" (a failing check is a 503).')
    database: str = Field(description='"reachable".')
    dialect: str


class Live(BaseModel):
    """The process answers (``/api/live`` consults no database)."""

    status: str = Field(description='Always "alive".')


class Ready(BaseModel):
    """The database answered within the bound and is at this code's schema version."""

    status: str = Field(description='Always "ready" (anything else is a 503 saying why).')
    schema_version: int = Field(description="The database's schema version (this code's).")
    dialect: str


class Version(BaseModel):
    """What is serving: the package, and the schema versions of the database and the code."""

    version: str = Field(description="The uniqc-store package version.")
    schema_version: int = Field(description="The database's schema version.")
    current_schema_version: int = Field(description="The newest schema this package knows.")


def expiry_report(outcome: dict[str, Any]) -> ExpiryReport:
    """The store's ``archive_expired`` answer with every id list bounded."""
    lists: dict[str, Any] = {}
    for name in ("archived", "skipped_running", "skipped_conflicts"):
        ids = outcome[name]
        lists[name] = ids[:MAX_REPORTED_IDS]
        lists[f"{name}_truncated"] = len(ids) > MAX_REPORTED_IDS
        if name != "archived":
            lists[f"{name}_count"] = len(ids)
    return ExpiryReport(
        count=len(outcome["archived"]),
        hours=outcome["hours"],
        terminal_only=outcome["terminal_only"],
        **lists,
    )
