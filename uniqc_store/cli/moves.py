"""The commands that move or delete tasks: ``archive-expired``, ``purge``,
``archive``, ``restore`` and ``delete``.

Each says what it did in one line; a run stopped part-way by an error says
how much was done before the error line (each chunk or batch is all or nothing).
"""

from __future__ import annotations

import click

from uniqc_store.cli.support import (
    Command,
    Duration,
    fail,
    opened_store,
    progress,
    reports_errors,
    url_option,
    working,
)
from uniqc_store.errors import PartialRunError
from uniqc_store.repository.archive import PurgeReport
from uniqc_store.schema.validation import MAX_BATCH_SIZE


@click.command("archive-expired", cls=Command)
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


@click.command(cls=Command)
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


@click.command(cls=Command)
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


@click.command(cls=Command)
@click.argument("task_id")
@url_option
@reports_errors
def restore(task_id: str, url: str | None) -> None:
    """Move an archived task back to the live tasks."""
    with opened_store(url) as store:
        if not store.restore_task(task_id):
            fail(f"no archived task {task_id!r}")
    click.echo(f"restored {task_id}")


@click.command(cls=Command)
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


#: What ``commands`` adds to the group.
COMMANDS = (archive_expired, purge, archive, restore, delete)
