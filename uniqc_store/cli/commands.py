"""``uniqc-store``: operate a task store from a terminal (the ``cli`` extra).

The schema commands live in ``schema``, what every command shares in
``support``; this module holds the group and the contents commands.

Every command takes ``--url`` (else ``UNIQC_STORE_URL``, else the embedded
default). Errors print one line, no traceback, no password, and exit with the
status of their kind (``support.EXIT_CODES_HELP``).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

try:
    import click
    from rich import box
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the extra
    sys.stderr.write(
        "uniqc-store: the command line needs the cli extra: pip install 'uniqc-store[cli]'\n"
    )
    raise SystemExit(1) from None

from sqlalchemy import Connection, select, text

from uniqc_store import __version__
from uniqc_store.cli import schema as cli_schema
from uniqc_store.cli import tables as cli_tables
from uniqc_store.cli.support import (
    EXIT_CODES_HELP,
    Command,
    Duration,
    environment_store_options,
    existing_url,
    fail,
    human_size,
    opened_store,
    output_console,
    parse_hours,
    progress,
    reports_errors,
    shown_url,
    url_option,
    working,
)
from uniqc_store.db.urls import sqlite_file_path
from uniqc_store.errors import PartialRunError
from uniqc_store.records import TaskInfo, TaskStatus
from uniqc_store.redaction import redact_record
from uniqc_store.repository import counts as tallies
from uniqc_store.repository import row_check, transfer
from uniqc_store.repository.archive import PurgeReport
from uniqc_store.repository.store import TaskStore
from uniqc_store.schema.tables import archived_task_shards, archived_tasks, task_shards, tasks
from uniqc_store.schema.validation import MAX_BATCH_SIZE

__all__ = ["main", "parse_hours"]


class _Group(click.Group):
    command_class = Command


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP
)
@click.version_option(__version__, "--version", "-V", prog_name="uniqc-store")
def main() -> None:
    """Operate a uniqc task store: schema, contents, archive, export and the REST API."""


for _command in cli_schema.COMMANDS:
    main.add_command(_command)


def _database_size(store: TaskStore) -> int | None:
    path = sqlite_file_path(store.url)
    if path is not None:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    queries = {
        "postgresql": "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
        "WHERE c.relname IN ('tasks','archived_tasks','task_shards','archived_task_shards') "
        "AND pg_table_is_visible(c.oid)",
        "mysql": "SELECT sum(data_length + index_length) FROM information_schema.tables "
        "WHERE table_schema = DATABASE()",
    }
    sql = queries.get("mysql" if store.dialect == "mariadb" else store.dialect)
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


@main.command()
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


@main.command("list")
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


@main.command()
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


@main.command("archive-expired")
@click.option(
    "--older-than",
    "hours",
    type=Duration(),
    default="72h",
    show_default=True,
    help="Age since the last update, e.g. 72h, 3d, 90m, 1w.",
)
@click.option("--all-statuses", is_flag=True, help="Archive non-terminal tasks too.")
@click.option("--dry-run", is_flag=True, help="Only show what would be archived.")
@url_option
@reports_errors
def archive_expired(hours: float, all_statuses: bool, dry_run: bool, url: str | None) -> None:
    """Archive tasks not updated for a while (100 tasks per transaction).

    Each chunk of 100 is all or nothing; if one fails, the chunks before it
    stay archived and the command says how many before the error line.
    """
    with opened_store(url) as store:
        if dry_run:
            ids = store.expired_task_ids(hours, terminal_only=not all_statuses)
            click.echo(f"would archive {len(ids)} task(s)")
            for task_id in ids:
                click.echo(task_id)
            return
        try:
            with working("archiving expired tasks"):
                outcome = store.archive_expired(hours, terminal_only=not all_statuses)
        except PartialRunError as exc:
            done = exc.report if isinstance(exc.report, dict) else {}
            click.echo(f"archived {done.get('count', 0)} task(s) before an error")
            raise
    click.echo(
        f"archived {outcome['count']} task(s); skipped {len(outcome['skipped_running'])} "
        f"unfinished, {len(outcome['skipped_conflicts'])} already archived"
    )


@main.command()
@click.option(
    "--older-than",
    "hours",
    type=Duration(),
    required=True,
    help="Age since the task was archived, e.g. 30d, 720h, 1w.",
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Always keep the N most recently archived tasks, however old.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=1000,
    show_default=True,
    help="Archived tasks deleted per transaction.",
)
@click.option("--dry-run", is_flag=True, help="Only count (and list) what would be deleted.")
@url_option
@reports_errors
def purge(hours: float, keep_last: int, batch_size: int, dry_run: bool, url: str | None) -> None:
    """Delete archived tasks archived longer ago than --older-than, with their shards.

    For good: `uniqc-store export FILE` keeps a copy first. Live tasks are never
    touched. Each batch is one transaction; if one fails, the batches before it
    stay deleted and the command says how many before the error line. A
    progress bar shows on a terminal.
    """
    with opened_store(url) as store:
        label = "checking the archive" if dry_run else "purging the archive"
        try:
            with progress(store.count_archived(), label) as advance:
                report = store.purge_archived(
                    older_than_hours=hours,
                    keep_last=keep_last,
                    batch_size=batch_size,
                    dry_run=dry_run,
                    progress=advance,
                )
        except PartialRunError as exc:
            if isinstance(exc.report, PurgeReport):
                click.echo(f"{_purged(exc.report)} before an error")
            raise
    click.echo(_purged(report))
    if dry_run:
        for task_id in report.task_ids:
            click.echo(task_id)
        if not report.ids_complete:
            click.echo(f"... and {report.tasks - len(report.task_ids)} more")


def _purged(report: PurgeReport) -> str:
    verb = "would delete" if report.dry_run else "deleted"
    line = f"{verb} {report.tasks} archived task(s) and {report.shards} archived shard(s)"
    if not report.dry_run:
        line += f" in {report.batches} transaction(s)"
    return line


@main.command()
@click.argument("task_id")
@url_option
@reports_errors
def archive(task_id: str, url: str | None) -> None:
    """Move one live task and its shards into the archive, whatever its age or status."""
    with opened_store(url) as store:
        if not store.archive_task(task_id):
            if store.get_archived(task_id) is not None:
                fail(f"task {task_id!r} is already archived")
            fail(f"no task {task_id!r}")
    click.echo(f"archived {task_id}")


@main.command()
@click.argument("task_id")
@url_option
@reports_errors
def restore(task_id: str, url: str | None) -> None:
    """Move an archived task back to the live tasks."""
    with opened_store(url) as store:
        if not store.restore_task(task_id):
            fail(f"no archived task {task_id!r}")
    click.echo(f"restored {task_id}")


@main.command()
@click.argument("task_id")
@click.option("--archived", is_flag=True, help="Delete the archived copy instead of a live task.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@url_option
@reports_errors
def delete(task_id: str, archived: bool, yes: bool, url: str | None) -> None:
    """Delete a task and its shards for good (asks first unless --yes).

    Works on live tasks whatever their status; --archived deletes an archived
    task instead. `uniqc-store export FILE` keeps a copy first.
    """
    where = "archived task" if archived else "task"
    with opened_store(url) as store:
        info = store.get_archived(task_id) if archived else store.get(task_id)
        if info is None:
            other = store.get(task_id) if archived else store.get_archived(task_id)
            hint = ""
            if other is not None:
                hint = " (it is live)" if archived else " (it is archived: add --archived)"
            fail(f"no {where} {task_id!r}{hint}")
            return
        shards = store.get_archived_shards(task_id) if archived else store.get_shards(task_id)
        if not yes:
            click.confirm(
                f"delete {where} {task_id} ({info.status}, {len(shards)} shard(s))? "
                "This cannot be undone",
                abort=True,
                err=True,
            )
        deleted = store.delete_archived(task_id) if archived else store.delete(task_id)
    if not deleted:  # gone between the look-up and the delete
        fail(f"no {where} {task_id!r}")
    click.echo(f"deleted {where} {task_id}")


@main.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@url_option
@reports_errors
def export_command(file: str, url: str | None) -> None:
    """Write every task, shard and archived row to FILE as JSON Lines (- for stdout).

    The export is a lossless backup: credentials in metadata, results and
    error messages are written as stored, NOT redacted. Keep the file as
    private as the database itself. A progress bar shows on a terminal.
    """
    with opened_store(url) as store:
        total = transfer.count_rows(store)
        with progress(total, "exporting") as advance:
            if file == "-":
                counts = transfer.export_jsonl(store, sys.stdout, advance)
            else:
                with open(file, "w", encoding="utf-8") as out:
                    counts = transfer.export_jsonl(store, out, advance)
    click.echo(f"exported {_summary(counts)}", err=file == "-")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@url_option
@reports_errors
def import_command(file: str, url: str | None) -> None:
    """Load a JSON Lines export into the store (rows are upserted; all or nothing).

    A progress bar shows on a terminal (not when reading standard input).
    """
    with opened_store(url) as store:
        if file == "-":
            counts = transfer.import_jsonl(store, sys.stdin)
        else:
            size = Path(file).stat().st_size
            with open(file, encoding="utf-8") as lines, progress(size, "importing") as advance:
                counts = transfer.import_jsonl(store, _count_bytes(lines, advance))
    click.echo(f"imported {_summary(counts)}")


@main.command("check-rows")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per problem.")
@url_option
@reports_errors
def check_rows(as_json: bool, url: str | None) -> None:
    """List stored rows the store cannot read back or could not have written.

    Rows another tool wrote are checked as an import checks each line (what
    save() refuses: an export holding them would not import) and as reads
    decode them: an "unreadable" row makes get() and every listing page that
    holds it fail. Values of payloads and error messages are never shown.
    Exit status 1 when anything is found: fix or delete those rows (with SQL,
    or `uniqc-store delete ID`), then run the check again.
    """
    found: set[tuple[str, tuple[Any, ...]]] = set()
    unreadable: set[tuple[str, tuple[Any, ...]]] = set()
    with opened_store(url) as store:
        scan = row_check.RowScan(store)
        for problem in scan:
            row = (problem.table, problem.key)
            found.add(row)
            if problem.unreadable:
                unreadable.add(row)
            click.echo(_row_problem(problem, as_json))
    if found:
        fail(
            f"{len(found)} of {scan.rows} row(s) break the store's rules, {len(unreadable)} of "
            "them unreadable: fix or delete them (SQL, or `uniqc-store delete ID`)"
        )
    click.echo(f"checked {scan.rows} row(s): every one reads back and could have been saved")


def _row_problem(problem: row_check.RowProblem, as_json: bool) -> str:
    if as_json:
        record = {
            "table": problem.table,
            "key": list(problem.key),
            "column": problem.column,
            "problem": problem.problem,
            "unreadable": problem.unreadable,
            "value": problem.value,
        }
        return json.dumps(record, ensure_ascii=False, default=repr)
    key = ", ".join(map(repr, problem.key))
    shown = "" if problem.value is None else f" (holds {_shortened(repr(problem.value))})"
    kind = "UNREADABLE" if problem.unreadable else "refused by save/import"
    return f"{problem.table} {key}: {kind}: {problem.column}{shown}: {problem.problem}"


def _shortened(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def _count_bytes(lines: Any, advance: Any) -> Iterator[str]:
    for line in lines:
        advance(len(line.encode("utf-8")))
        yield line


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer for this Host (a name, an IP, *.example.com or *); repeatable. "
    "Loopback names and --host are always served; UNIQC_STORE_ALLOWED_HOSTS adds more "
    "(comma-separated).",
)
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    help="The path prefix a proxy serves the app under (e.g. /store), as uvicorn's --root-path.",
)
@url_option
@reports_errors
def serve(
    host: str, port: int, allowed_hosts: tuple[str, ...], root_path: str, url: str | None
) -> None:
    """Run the REST API and the dashboard (at /) with uvicorn (the api extra).

    Credentials in responses are redacted. Set UNIQC_STORE_API_TOKEN to require
    "Authorization: Bearer <token>" on every API request; a token that is set but
    empty, blank or not sendable in a header is refused. The server answers only
    for the hosts it serves (others get 400) and refuses writes another web site
    could send (403): see the README's "Security" section. Probes at /api/live and
    /api/ready (no token, any host), Prometheus metrics at /metrics (token and host
    rules as /api): the README's "Running in production".
    """
    try:
        import uvicorn

        from uniqc_store.api.app import create_app
        from uniqc_store.api.auth import api_token
        from uniqc_store.api.dashboard import close_streams
        from uniqc_store.api.edge import ALLOWED_HOSTS_ENV, HostAllowlist
    except ImportError:
        fail("the REST API needs the api extra: pip install 'uniqc-store[api]'")
        return
    token = api_token()  # before opening anything: a bad token is a ValueError, one line
    served_hosts = [*allowed_hosts, host]
    hosts = HostAllowlist.configured(served_hosts)  # a bad name: one line, nothing opened
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise click.BadParameter("give it as /prefix (a leading slash, none at the end)")
    if token is None and not _is_loopback(host):
        click.echo(
            f"warning: serving on {host} without UNIQC_STORE_API_TOKEN: anyone who can reach "
            f"port {port} can read, archive and delete every task. Set UNIQC_STORE_API_TOKEN "
            "to require a bearer token.",
            err=True,
        )
    store = TaskStore(url=existing_url(url), **environment_store_options())
    app = create_app(store, allowed_hosts=served_hosts)
    click.echo(
        f"serving {shown_url(url, store.url)} on http://{host}:{port}{root_path}/ "
        "(the dashboard at /, the API under /api)",
        err=True,
    )
    click.echo(
        f"answering for the hosts {', '.join(hosts.patterns)} "
        f"(add one with --allowed-host NAME or {ALLOWED_HOSTS_ENV})",
        err=True,
    )

    class Server(uvicorn.Server):
        """Ends the dashboards' event streams on Ctrl-C: they would hold the shutdown."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            close_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, root_path=root_path, log_level="info")
    Server(config).run()


def _is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


if __name__ == "__main__":  # pragma: no cover
    main()
