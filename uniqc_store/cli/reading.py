"""``stats``, ``list`` and ``show``: the commands that read a store and print it.

Output is for people (tables that never cut an id) or, with ``--json``, for
scripts; credentials are hidden unless ``--reveal`` asks for them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from sqlalchemy import Connection, select, text

from uniqc_store.cli import tables as cli_tables
from uniqc_store.cli.support import (
    Command,
    fail,
    human_size,
    opened_store,
    output_console,
    reports_errors,
    shown_url,
    url_option,
)
from uniqc_store.db.dialects import family_of
from uniqc_store.db.urls import sqlite_file_path
from uniqc_store.records import TaskInfo, TaskStatus
from uniqc_store.redaction import redact_record
from uniqc_store.repository import counts as tallies
from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks


def _database_size(store: TaskStore) -> int | None:
    """The file and its WAL on SQLite, else what the server says its tables take."""
    path = sqlite_file_path(store.url)
    if path is not None:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    sql = family_of(store.dialect).size_sql
    if sql is None:
        return None
    size = store._read(lambda conn: conn.execute(text(sql)).scalar())
    return int(size) if size is not None else None


def _counts(store: TaskStore) -> dict[str, Any]:
    """Counts by status and backend, live and archived, for ``stats`` (one snapshot)."""

    def read(conn: Connection) -> dict[str, tallies.Tally]:
        present = tallies.counters_present(conn)
        return {
            label: tallies.tally(conn, source, present)
            for label, source in (("live", tasks), ("archived", archived_tasks))
        }

    return {
        label: {
            "total": found.total(),
            "by_status": found.by_status(),
            "by_backend": found.by_backend(),
            "groups": [
                {"status": s, "backend": b, "tasks": n}
                for (s, b), n in sorted(found.groups.items())
            ],
        }
        for label, found in store._read(read, snapshot=True).items()
    }


@click.command(cls=Command)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@url_option
@reports_errors
def stats(as_json: bool, url: str | None) -> None:
    """Counts by status and backend, live and archived, and the database size."""
    with opened_store(url) as store:
        shown = shown_url(url, store.url)
        counts = _counts(store)
        size = _database_size(store)
    live, archived = counts["live"]["total"], counts["archived"]["total"]
    if as_json:
        report = {"url": shown, **counts, "total": live + archived, "size_bytes": size}
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    console = output_console()
    click.echo(f"database: {shown}")  # whole, on its own line: the terminal wraps it
    rows = [
        (label, group["status"], group["backend"], str(group["tasks"]))
        for label in ("live", "archived")
        for group in counts[label]["groups"]
    ]
    cli_tables.print_rows(console, Table, _STATS_FIELDS, rows, title="task counts")
    console.print(f"live: {live}  archived: {archived}  size: {human_size(size)}", highlight=False)


#: ``stats``' columns: a long backend name wraps, never cut.
_STATS_FIELDS = (
    cli_tables.Field("table"),
    cli_tables.Field("status"),
    cli_tables.Field("backend", wraps_to=12),
    cli_tables.Field("tasks", justify="right"),
)


def _task_dict(info: TaskInfo, reveal: bool) -> dict[str, Any]:
    """The record as JSON-ready data, credentials hidden unless the operator asked."""
    record = info.to_dict()
    return record if reveal else redact_record(record)


reveal_option = click.option(
    "--reveal",
    is_flag=True,
    help="Print credentials in metadata, results and error messages as stored "
    "(hidden by default, as in the REST API).",
)
STATUSES = click.Choice([s.value for s in TaskStatus])


@click.command("list", cls=Command)
@click.option("--status", type=STATUSES)
@click.option("--backend")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    help="Skip this many tasks (the database reads and drops each: deep pages cost "
    "more and more; see --cursor).",
)
@click.option(
    "--cursor",
    help="Page by cursor: '' for the first page, then the cursor printed (on stderr) "
    "after each page. Every page costs what the first does; ties by task id.",
)
@click.option("--archived", is_flag=True, help="List the archive instead of live tasks.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@reveal_option
@url_option
@reports_errors
def list_tasks(
    status: str | None,
    backend: str | None,
    limit: int,
    offset: int,
    cursor: str | None,
    archived: bool,
    as_json: bool,
    reveal: bool,
    url: str | None,
) -> None:
    """List tasks, newest first. Task ids are printed whole, never cut.

    With --cursor, the cursor of the next page follows on stderr as
    ``next cursor: ...`` (``last page`` after the last one), so standard output
    holds only the tasks.
    """
    if cursor is not None and offset:
        raise click.UsageError(
            "--offset and --cursor cannot be combined: a cursor page starts where its cursor says"
        )
    next_cursor = None
    with opened_store(url) as store:
        filters = {"status": status, "backend": backend}
        if cursor is None:
            lister = store.list_archived if archived else store.list
            found = lister(**filters, limit=limit, offset=offset)
        else:
            pager = store.list_archived_page if archived else store.list_page
            found, next_cursor = pager(**filters, limit=limit, cursor=cursor or None)
    _print_tasks(found, as_json, reveal)
    if cursor is not None:
        click.echo("last page" if next_cursor is None else f"next cursor: {next_cursor}", err=True)


def _print_tasks(found: list[TaskInfo], as_json: bool, reveal: bool) -> None:
    """``list``'s output: one JSON object per line, or the table."""
    if as_json:
        for info in found:
            click.echo(json.dumps(_task_dict(info, reveal), ensure_ascii=False))
        return
    rows = [
        (
            info.task_id,
            info.backend,
            str(info.status),
            str(info.shots),
            _utc_seconds(info.submit_time),
        )
        for info in found
    ]
    cli_tables.print_rows(output_console(), _list_table, _LIST_FIELDS, rows)


#: ``list``'s columns: the id, status and shots whole; the backend may wrap, the
#: time only at its space (``2026-11-25`` above ``19:55:49``), so neither is cut.
_LIST_FIELDS = (
    cli_tables.Field("task_id"),
    cli_tables.Field("backend", wraps_to=12),
    cli_tables.Field("status"),
    cli_tables.Field("shots", justify="right"),
    cli_tables.Field("submitted", wraps_to=len("2026-11-25")),
)


def _list_table() -> Table:
    """No borders beside the columns: room for the ids, and `awk` can pick them."""
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def _utc_seconds(stamp: str) -> str:
    """``2026-11-25T19:55:49.833633+00:00`` -> ``2026-11-25 19:55:49`` (UTC) for a table;
    text that is not an ISO time is shown as it is."""
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@click.command(cls=Command)
@click.argument("task_id")
@reveal_option
@url_option
@reports_errors
def show(task_id: str, reveal: bool, url: str | None) -> None:
    """Show one task (live or archived) with its shards, as JSON.

    TASK_ID may also be a platform task id (a task id is looked up first): the
    task holding that shard is shown; when several tasks hold one, they are
    listed and nothing is shown.
    """
    with opened_store(url) as store:
        found = store._locate(task_id)
        if found is None:
            owners = _owners_of_platform_id(store, task_id)
            if len(owners) > 1:
                listed = ", ".join(f"{owner} ({backend})" for owner, backend in owners)
                fail(
                    f"platform id {task_id!r} is a shard of several tasks: {listed}; "
                    "show one by its task id"
                )
            if owners:
                click.echo(f"platform id {task_id} is a shard of task {owners[0][0]}", err=True)
                found = store._locate(owners[0][0])
    if found is None:  # no such id, or the task moved away meanwhile
        fail(f"no task {task_id!r}")
        return
    info, shards, _archived = found
    record = {**info.to_dict(), "shards": [s.to_dict() for s in shards]}
    if not reveal:
        record = redact_record(record)
    click.echo(json.dumps(record, ensure_ascii=False, indent=2))


def _owners_of_platform_id(store: TaskStore, platform_task_id: str) -> list[tuple[str, str]]:
    """The tasks, live or archived, holding a shard with this platform id, with the
    shards' backends: a few at most, enough to say the id is ambiguous.

    ``get_shard_by_platform_id`` returns one shard and sees live tasks only; a
    platform id is unique on its platform only, so two backends may share one.
    """
    few = 5

    def read(conn: Connection) -> list[tuple[str, str]]:
        found: dict[str, str] = {}
        for shards in (task_shards, archived_task_shards):  # by their platform-id indexes
            stmt = (
                select(shards.c.uniqc_task_id, shards.c.backend)
                .where(shards.c.platform_task_id == platform_task_id)
                .distinct()
                .limit(few)
            )
            for owner, backend in conn.execute(stmt):
                found.setdefault(str(owner), str(backend))
        return sorted(found.items())[:few]

    return store._read(read, snapshot=True)


#: What ``commands`` adds to the group.
COMMANDS = (stats, list_tasks, show)
