"""The ``alembic`` command line, run in this process.

``run_alembic(*argv)`` parses ``argv`` with Alembic's own ``CommandLine`` and runs
the command against the same ``alembic.ini`` and ``env.py`` as ``python -m alembic``
would, from ``cwd`` and under ``env``, and returns what a subprocess would: the
exit code, the printed output and the log lines and traceback on stderr. It saves
the interpreter start-up and imports of a real process (about a second a call).

The suite keeps one real subprocess per command shape (``upgrade``, ``downgrade``,
``current``/``history``/``check``, ``--sql``: ``tests/test_engines.py::
test_the_real_alembic_command_line``), so what only a real process shows (the
console entry point, ``sys.exit`` codes) is still checked.
"""

from __future__ import annotations

import io
import logging
import os
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from alembic.config import CommandLine, Config

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AlembicResult:
    """What ``subprocess.run(..., capture_output=True, text=True)`` would give."""

    returncode: int
    stdout: str
    stderr: str


def run_alembic(
    *argv: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> AlembicResult:
    """Run ``alembic *argv`` in this process (``env`` replaces ``os.environ`` meanwhile)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _environment(cwd, env), _logging_restored(), redirect_stdout(out), redirect_stderr(err):
        try:
            cli = CommandLine(prog="alembic")
            options = cli.parser.parse_args(list(argv))
            ini = options.config[-1] if options.config else "alembic.ini"
            config = Config(file_=ini, ini_section=options.name, cmd_opts=options, stdout=out)
            cli.run_cmd(config, options)
        except SystemExit as exc:  # bad arguments, or a CommandError Alembic printed
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # what the real command would end with: a traceback, exit 1
            err.write(traceback.format_exc())
            code = 1
    return AlembicResult(code, out.getvalue(), err.getvalue())


@contextmanager
def _environment(cwd: Path, env: Mapping[str, str] | None) -> Iterator[None]:
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextmanager
def _logging_restored() -> Iterator[None]:
    """env.py applies the ini's logging sections (``fileConfig``); undo that afterwards,
    so pytest's own handlers (``caplog``) are where they were."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        for logger, level, handlers, propagate, disabled in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled
        for logger in logging.Logger.manager.loggerDict.values():
            if isinstance(logger, logging.Logger) and logger not in loggers:
                logger.setLevel(logging.NOTSET)  # made by fileConfig (``alembic`` at INFO)


def offline_upgrade(url: str, revisions: str) -> tuple[str, list[str]]:
    """What ``alembic upgrade <revisions> --sql`` prints for ``url``: the whole text, and
    its statements without comments, transaction lines and PRAGMAs (a revision that
    changes nothing on that engine leaves only its version stamp there)."""
    up = run_alembic("-x", f"url={url}", "upgrade", revisions, "--sql")
    assert up.returncode == 0, up.stderr
    statements = [
        line
        for line in up.stdout.splitlines()
        if line.strip() and not line.startswith(("--", "BEGIN", "COMMIT", "PRAGMA"))
    ]
    return up.stdout, statements
