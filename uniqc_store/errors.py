"""The store's own errors, so callers never need SQLAlchemy to handle one.

Bad arguments raise plain ``ValueError`` / ``TypeError``; everything about
the database itself raises a :class:`StoreError`.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class of every error about the database behind a store."""


class ForeignDatabaseError(StoreError):
    """The file is not a uniqc task database; it was left untouched."""


class SchemaOutOfDateError(StoreError):
    """The database is behind this package's schema and must be upgraded."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer release than this one."""


class DatabaseUnavailableError(StoreError):
    """The database server could not be reached or the file could not be opened."""


class DatabaseBusyError(StoreError):
    """Another connection held the database's lock past the busy timeout; try again."""


class TaskConflictError(StoreError, ValueError):
    """A move (archive or restore) would overwrite a row that already exists."""


class MissingParentTaskError(StoreError, ValueError):
    """A shard was saved for a task id that has no row in ``tasks``."""


class PartialRunError(StoreError):
    """A call made of several atomic chunks (``archive_expired``, ``purge_archived``)
    failed part-way. The chunks before the failing one are committed, and ``report``
    says what they did, in the call's own report form; the failing chunk left
    nothing behind. The original error is the ``__cause__``. Run the call again
    to go on: it picks up what is still due."""

    def __init__(self, message: str, *, report: object) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only fields survive pickling
        return (_partial_run_error, (str(self), self.report))


def _partial_run_error(message: str, report: object) -> PartialRunError:
    return PartialRunError(message, report=report)


class PayloadTooLargeError(StoreError, ValueError):
    """A row is larger than the database server accepts in one statement."""


class DriverNotInstalledError(StoreError):
    """The database URL names a driver (DB-API module) that is not installed."""


class UnreadableRowError(StoreError):
    """A stored row holds a value the store cannot read as its column's type (another
    tool wrote it): the message names the table, the row's key and the column.

    ``uniqc-store check-rows`` lists every such row; fix or delete it.
    """

    def __init__(self, message: str, *, table: str, key: object, column: str) -> None:
        super().__init__(message)
        self.table = table
        self.key = key
        self.column = column

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only fields survive pickling
        return (_unreadable_row_error, (str(self), self.table, self.key, self.column))


def _unreadable_row_error(message: str, table: str, key: object, column: str) -> UnreadableRowError:
    return UnreadableRowError(message, table=table, key=key, column=column)
