"""The commands that read or write whole stores through files and rows:
``export``, ``import`` and ``check-rows``.

An export is a lossless JSON Lines backup (credentials as stored); an import
is all or nothing; ``check-rows`` lists what another tool wrote that the store
could not read back or could not have written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from uniqc_store.cli.support import (
    Command,
    fail,
    opened_store,
    progress,
    reports_errors,
    url_option,
)
from uniqc_store.repository import row_check, transfer


@click.command("export", cls=Command)
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


@click.command("import", cls=Command)
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


@click.command("check-rows", cls=Command)
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


#: What ``commands`` adds to the group.
COMMANDS = (export_command, import_command, check_rows)
