"""What every migration lock shares (``locks.py``, ``lease.py``): its name, who
takes it, how often a waiter looks, the error when the wait runs out, and the
SQLSTATE a PostgreSQL error carries."""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy.exc import DBAPIError

from uniqc_store.errors import DatabaseBusyError

#: The name of the lease and, with the database's name, of MySQL's lock.
LOCK_NAME = "uniqc_store_migrations"
#: The longest pause between two looks at a lease or a lock file.
POLL_CAP_S = 0.5


def owner_name() -> str:
    """Who takes the lock: what a waiter is told (host, pid and a nonce)."""
    return f"uniqc-store upgrade on {socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"


def busy_error(wait: float, holder: str | None) -> DatabaseBusyError:
    """The error of a lock wait that ran out: who holds it, and what to do."""
    held = f" (held by {holder})" if holder else ""
    return DatabaseBusyError(
        f"another upgrade of this database held the migration lock{held} for more than "
        f"{wait:g} s; run the upgrade again once it is done, or raise "
        "Timeouts.migration_lock_seconds (UNIQC_STORE_TIMEOUTS). Nothing was changed."
    )


def sqlstate_of(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)
