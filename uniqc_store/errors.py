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


class PayloadTooLargeError(StoreError, ValueError):
    """A row is larger than the database server accepts in one statement."""


class DriverNotInstalledError(StoreError):
    """The database URL names a driver (DB-API module) that is not installed."""
