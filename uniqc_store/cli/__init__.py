"""The ``uniqc-store`` command line (``uniqc_store.cli:main``).

``commands`` holds the group; ``schema`` the schema commands (upgrade,
downgrade, current, check), ``reading`` stats/list/show, ``moves`` the archive
and delete commands, ``files`` export/import/check-rows, ``serving`` serve;
``support`` what they share (opening a store from ``--url`` or the environment,
errors as exit codes), ``tables`` the terminal tables.
"""

from __future__ import annotations

from uniqc_store.cli.commands import main

__all__ = ["main"]
