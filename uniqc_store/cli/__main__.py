"""``python -m uniqc_store.cli``: the ``uniqc-store`` command, as before the package."""

from __future__ import annotations

from uniqc_store.cli.commands import main

if __name__ == "__main__":
    main(prog_name="uniqc-store")
