"""``python -m uniqc_store``: the ``uniqc-store`` command (the ``cli`` extra)."""

from __future__ import annotations

from uniqc_store.cli.commands import main

if __name__ == "__main__":
    main(prog_name="uniqc-store")
