"""What every ``uniqc-store`` command shares: exit codes, one-line errors, the
URL as the operator typed it, durations, sizes and progress on a terminal."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from alembic.util import CommandError
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import URL
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

from uniqc_store.db.dialects import is_mysql
from uniqc_store.db.urls import redact, redact_text, resolve_url, sqlite_file_path
from uniqc_store.errors import (
    DatabaseBusyError,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    ForeignDatabaseError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreError,
)
from uniqc_store.repository.store import TaskStore
from uniqc_store.timeouts import store_options_from_environment

F = TypeVar("F", bound=Callable[..., Any])

#: Exit statuses, as the README and ``--help`` list them.
EXIT_OK = 0
EXIT_FAILED = 1  # not found, refused, check failed, bad input file
EXIT_USAGE = 2  # click's own status for a bad option, argument or value
EXIT_UNAVAILABLE = 3  # the database cannot be reached or opened
EXIT_INCOMPATIBLE = 4  # the database is not one this version can use as it is

EXIT_CODES_HELP = """\b
Exit status:
  0  success
  1  failed: no such task, refused (downgrade without --yes), check differs
  2  usage: bad option or value (--status, --limit, --older-than, --url)
  3  unavailable: no SQLite file, server unreachable, driver missing
  4  incompatible: foreign file, schema too new, server behind head
"""

_UNAVAILABLE = (DatabaseUnavailableError, DatabaseBusyError, DriverNotInstalledError)
_INCOMPATIBLE = (ForeignDatabaseError, SchemaTooNewError, SchemaOutOfDateError)

#: Rendered URLs (as the store prints them) -> the URL as the operator gave it.
_shown: dict[str, str] = {}


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print one clear line (passwords masked, URLs as given) and exit ``code``."""
    for rendered, given in _shown.items():
        message = message.replace(rendered, given)
    click.echo(f"error: {redact_text(message)}", err=True)
    raise SystemExit(code)


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, _UNAVAILABLE):
        return EXIT_UNAVAILABLE
    if isinstance(exc, _INCOMPATIBLE):
        return EXIT_INCOMPATIBLE
    return EXIT_FAILED


def reports_errors(fn: F) -> F:
    """One line on stderr and the exit status of the error's kind; quiet on a closed pipe."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _shown.clear()  # URLs named by an earlier command of this process do not apply
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            closed_pipe()
        except (StoreError, ValueError, TypeError, OSError, CommandError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exit_code_of(exc))
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            fail(f"database error: {str(orig).splitlines()[0]}")

    return wrapper  # type: ignore[return-value]


def closed_pipe() -> None:
    """The reader went away (``| head``): end as Unix tools do, silently, by SIGPIPE.

    Python ignores SIGPIPE and raises instead; put the default back and
    raise the signal, so a shell sees 141 and no message is printed.
    Standard output is pointed at /dev/null first, so nothing is flushed.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file descriptor (in-process runs)
        raise SystemExit(EXIT_FAILED) from None
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    raise SystemExit(128 + 13)  # pragma: no cover - where there is no SIGPIPE


class _OutputConsole(Console):
    """Rich's console on stdout; a closed pipe ends the command as Unix tools end."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # reports_errors turns it into a quiet SIGPIPE


def output_console() -> Console:
    """A console for tables on stdout (created per command: it reads ``COLUMNS``)."""
    return _OutputConsole()


def shown_url(given: str | None, resolved: URL) -> str:
    """The database as the operator named it (password masked): their URL, or the
    default file's path; never SQLAlchemy's rendering of the engine's URL
    (``sqlite+pysqlite:////``, an added ``?charset=utf8mb4``).

    The given URL is shown through its parsed form, never as raw text: a password
    with spaces or other odd characters is only reliably masked once parsed.
    """
    path = sqlite_file_path(resolved)
    shown = redact(resolved) if given or path is None else str(path)
    _shown[redact(resolved)] = shown
    if "charset" not in resolved.query and is_mysql(resolved.get_backend_name()):
        _shown[redact(resolved.update_query_dict({"charset": "utf8mb4"}))] = shown
    return shown


def check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--url``: a URL that does not parse, or names no dialect, is a usage error (exit 2),
    in one line like every other error (the URL is not echoed: it may hold a password)."""
    if value is None:
        return None
    suggested = _sqlite_url_for_path(value)
    if suggested is not None:
        fail(f"--url: {value!r} is a file path, not a database URL: use {suggested}", EXIT_USAGE)
    from uniqc_store.db.urls import parse_url

    try:
        parsed = parse_url(value)
    except ValueError as exc:
        fail(f"--url: {exc}", EXIT_USAGE)
        raise AssertionError("unreachable") from None  # pragma: no cover
    try:
        parsed.get_dialect()  # the dialect only: a missing driver is found on opening (exit 3)
    except NoSuchModuleError:
        fail(
            f"--url: no SQLAlchemy dialect for {parsed.drivername!r}: use a URL starting with "
            "sqlite://, postgresql+psycopg:// or mysql+pymysql://",
            EXIT_USAGE,
        )
    return value


def _sqlite_url_for_path(value: str) -> str | None:
    """The SQLite URL for ``--url /tmp/x/tasks.sqlite`` (a bare path), or None.

    Text with ``://`` is a URL; text with ``@`` or ``:`` (``user:pass@host/db`` with
    no scheme) may hold a password and is never echoed. Anything else naming a path, or a file
    name with a dot, is taken for the SQLite file the operator meant: four slashes
    before an absolute path are easy to get wrong, so the error spells the URL out.
    """
    if ":" in value or "@" in value or not value.strip():
        return None
    if not value.startswith(("/", ".", "~")) and os.sep not in value and "." not in value:
        return None
    return f"sqlite:///{Path(value).expanduser()}"


url_option = click.option(
    "--url",
    envvar="UNIQC_STORE_URL",
    show_envvar=True,
    callback=check_url,
    help="Database URL, e.g. sqlite:///tasks.sqlite or postgresql+psycopg://user@host/db. "
    "Default: $UNIQC_STORE_URL, else the file ~/.uniqc/cache/tasks.sqlite.",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "": 1.0, "d": 24.0, "w": 168.0}


def parse_hours(text: str) -> float:
    """``72h``, ``3d``, ``90m``, ``1w`` or a plain number of hours."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 72h, 3d, 90m or 1w")
    return float(match.group(1)) * _UNIT_HOURS[match.group(2)]


class Duration(click.ParamType[float]):
    """A duration option, in hours; a bad one is a usage error that names the option."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            return parse_hours(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def human_size(size: int | None) -> str:
    """``81920`` -> ``80.0 KiB``; None -> ``unknown``."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


#: Below this many rows a progress bar would only flicker.
PROGRESS_THRESHOLD = 10_000


def _on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, label: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr for long runs on a terminal; a no-op otherwise."""
    if quiet or total < PROGRESS_THRESHOLD or not _on_terminal():
        yield lambda _n: None
        return
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def working(label: str) -> Iterator[None]:
    """A spinner on stderr while a single long statement runs, only on a terminal."""
    if not _on_terminal():
        yield
        return
    with Console(stderr=True).status(label):
        yield


class Command(click.Command):
    """Every command's ``--help`` ends with the exit statuses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(*args, **kwargs)


def existing_url(url: str | None) -> URL:
    """The database of a command that must not create one (every command but ``upgrade``).

    A SQLite file that does not exist (or is empty) is one line and exit 3
    (unavailable); nothing, not even its directory, is created.
    """
    resolved = resolve_url(url, create_dirs=False)
    path = sqlite_file_path(resolved)
    if path is not None and (not path.exists() or (path.is_file() and path.stat().st_size == 0)):
        fail(
            f"no task database at {path}; run `uniqc-store upgrade` to create one",
            EXIT_UNAVAILABLE,
        )
    shown_url(url, resolved)
    return resolved


def environment_store_options() -> dict[str, Any]:
    """``engine_options`` / ``timeouts`` from the environment (``timeouts.py``);
    a usage error if they are malformed."""
    try:
        return store_options_from_environment(os.environ)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def opened_store(url: str | None) -> Iterator[TaskStore]:
    store = TaskStore(url=existing_url(url), **environment_store_options())
    try:
        yield store
    finally:
        store.close()
