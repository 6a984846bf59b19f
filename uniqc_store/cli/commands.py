"""``uniqc-store``: operate a task store from a terminal (the ``cli`` extra).

This module holds the group; the commands live by what they do: ``schema``
(upgrade, downgrade, current, check), ``reading`` (stats, list, show),
``moves`` (archive-expired, purge, archive, restore, delete), ``files``
(export, import, check-rows) and ``serving`` (serve). What they share is in
``support``.

Every command takes ``--url`` (else ``UNIQC_STORE_URL``, else the embedded
default). Errors print one line, no traceback, no password, and exit with the
status of their kind (``support.EXIT_CODES_HELP``).
"""

from __future__ import annotations

import sys

try:
    import click
    import rich  # noqa: F401  (the tables need it: say so before any command runs)
except ImportError:  # pragma: no cover - exercised only without the extra
    sys.stderr.write(
        "uniqc-store: the command line needs the cli extra: pip install 'uniqc-store[cli]'\n"
    )
    raise SystemExit(1) from None

from uniqc_store import __version__
from uniqc_store.cli import files, moves, reading, schema, serving
from uniqc_store.cli.support import EXIT_CODES_HELP, Command, parse_hours

__all__ = ["main", "parse_hours"]


class _Group(click.Group):
    command_class = Command


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP
)
@click.version_option(__version__, "--version", "-V", prog_name="uniqc-store")
def main() -> None:
    """Operate a uniqc task store: schema, contents, archive, export and the REST API."""


for _module in (schema, reading, moves, files, serving):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
