"""How long a store waits, for each kind of wait, and where each bound is enforced.

One place for the numbers, so the engine's connect settings, the server
lock-wait settings, the SQLite busy timeout and the client-side deadlines of
``watchdog.py`` never disagree:

- ``connect_seconds``: establishing a connection (libpq's and PyMySQL's
  ``connect_timeout``; both are client-side, so they hold behind a pooler).
- ``lock_wait_seconds``: waiting for a lock another connection holds. SQLite:
  the busy timeout (a URL's ``?timeout=`` still wins) and the wait for the
  store's own lock; MySQL/MariaDB: ``innodb_lock_wait_timeout`` and
  ``lock_wait_timeout`` of the session (error 1205); PostgreSQL: a unit of
  work still running after this long is cancelled (a cancel request, which
  PgBouncer forwards; no ``SET`` or ``options=`` a pooler would refuse).
  Raised as ``DatabaseBusyError``.
- ``call_seconds``: the client-side deadline of one unit of work on a server,
  retries included: past it the socket is shut, so even a server that stopped
  answering (SIGSTOP) ends the call in ``DatabaseUnavailableError``.
- ``bulk_seconds``: the same for the calls whose size the caller does not
  bound (``save_many``, ``save_shards``, ``clear_completed``, ``clear_all``,
  ``archive_expired``, listings without a limit, export and import).
- ``migration_seconds``: the deadline of a whole ``upgrade``/``downgrade``.
- ``migration_lock_seconds``: how long an upgrade waits for another upgrader
  of the same database to finish (the migration lock); then
  ``DatabaseBusyError`` naming the holder when the database can tell.
- ``ddl_lock_seconds``: how long one migration statement waits for a table
  lock that live traffic holds. A DDL statement queued behind a long
  transaction makes every later reader of that table queue behind it, so it
  gives up early instead (PostgreSQL: ``SET LOCAL lock_timeout`` in each
  revision's transaction; MySQL/MariaDB: the session's ``lock_wait_timeout``
  on the migration's own connection). The revision is rolled back
  (PostgreSQL) and ``DatabaseBusyError`` says to run the upgrade again.
- ``ddl_statement_seconds``: the longest one migration statement may run on
  PostgreSQL (``SET LOCAL statement_timeout``); MySQL has no such bound for DDL.
  This and the lock wait never reach past ``migration_seconds``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Environment variables the CLI and ``serve`` read (JSON objects).
TIMEOUTS_ENV_VAR = "UNIQC_STORE_TIMEOUTS"
ENGINE_OPTIONS_ENV_VAR = "UNIQC_STORE_ENGINE_OPTIONS"


@dataclass(frozen=True)
class Timeouts:
    """The bounds of a store's waits, in seconds (see the module docstring)."""

    connect_seconds: float = 10.0
    lock_wait_seconds: float = 10.0
    call_seconds: float = 30.0
    bulk_seconds: float = 600.0
    migration_seconds: float = 3600.0
    migration_lock_seconds: float = 600.0
    ddl_lock_seconds: float = 5.0
    ddl_statement_seconds: float = 600.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Timeouts.{field.name} must be a number of seconds, not {value!r}")
            if not (math.isfinite(value) and 0 < value <= 86_400):
                raise ValueError(
                    f"Timeouts.{field.name} must be above 0 and at most 86400, not {value!r}"
                )
        if self.call_seconds <= self.lock_wait_seconds:
            raise ValueError(
                "Timeouts.call_seconds must be longer than lock_wait_seconds, so that a lock "
                f"wait ends as DatabaseBusyError first "
                f"({self.call_seconds} <= {self.lock_wait_seconds})"
            )
        if self.bulk_seconds < self.call_seconds:
            raise ValueError(
                f"Timeouts.bulk_seconds ({self.bulk_seconds}) must be at least call_seconds "
                f"({self.call_seconds})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Timeouts:
        """Timeouts from a mapping of field names (e.g. parsed JSON); unknown keys are refused."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown timeout(s) {unknown}: expected some of {sorted(known)}")
        return cls(**dict(values))

    @property
    def lock_wait_ms(self) -> int:
        """The lock-wait bound in milliseconds (SQLite's busy timeout)."""
        return int(self.lock_wait_seconds * 1000)

    @property
    def lock_wait_whole_seconds(self) -> int:
        """The lock-wait bound rounded up to whole seconds (what MySQL's settings take)."""
        return max(1, math.ceil(self.lock_wait_seconds))

    @property
    def connect_whole_seconds(self) -> int:
        """The connect bound in whole seconds (libpq and PyMySQL take integers; libpq's
        minimum is 2)."""
        return max(2, math.ceil(self.connect_seconds))

    @property
    def migration_lock_wait(self) -> float:
        """The wait for the migration lock, never past the whole migration's deadline."""
        return min(self.migration_lock_seconds, self.migration_seconds)

    @property
    def ddl_statement_ms(self) -> int:
        """PostgreSQL's ``statement_timeout`` for migrations, within the migration deadline."""
        return int(min(self.ddl_statement_seconds, self.migration_seconds) * 1000)


DEFAULT_TIMEOUTS = Timeouts()


def json_object_from_environment(name: str, text: str | None) -> dict[str, Any]:
    """The JSON object an environment variable holds ({} when unset), or a clear error."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{name} must hold a JSON object, e.g. '{{\"pool_size\": 20}}': {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must hold a JSON object, not {type(value).__name__}")
    return value


def store_options_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``TaskStore`` keyword arguments from ``UNIQC_STORE_ENGINE_OPTIONS`` and
    ``UNIQC_STORE_TIMEOUTS`` (JSON objects), for the CLI and ``serve``."""
    options: dict[str, Any] = {}
    engine_options = json_object_from_environment(
        ENGINE_OPTIONS_ENV_VAR, environ.get(ENGINE_OPTIONS_ENV_VAR)
    )
    if engine_options:
        options["engine_options"] = engine_options
    timeouts = json_object_from_environment(TIMEOUTS_ENV_VAR, environ.get(TIMEOUTS_ENV_VAR))
    if timeouts:
        options["timeouts"] = Timeouts.from_mapping(timeouts)
    return options
