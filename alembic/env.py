"""Alembic environment for uniqc-store.

The URL comes from ``-x url=...``, else the caller's Config, else
``UNIQC_STORE_URL``, else ``~/.uniqc/cache/tasks.sqlite``. A connection
(or engine) passed in ``config.attributes["connection"]`` is used as it is. Each
revision runs in its own transaction (real ones on SQLite too, through the
package's pysqlite recipe), and the SQLite header is stamped inside it.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine

from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import resolve_url
from uniqc_store.migrations.runner import (
    ddl_bounds,
    migration_connection,
    migration_lock,
    migration_timeouts,
    prepare_database,
    stamp_sqlite_header,
)
from uniqc_store.schema.tables import metadata
from uniqc_store.schema.types import with_mysql_options
from uniqc_store.schema.versions import version_table

config = context.config
_LOGGING_SECTIONS = ("loggers", "handlers", "formatters")
if config.config_file_name is not None and all(  # an ini with logging sections: log what runs
    config.file_config.has_section(section) for section in _LOGGING_SECTIONS
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
_NO_TRANSACTIONAL_DDL = ("mysql", "mariadb")
#: The tables with their MySQL options, so autogenerate renders them as the revisions pass them.
_TARGET = with_mysql_options(metadata)


def _url():  # type: ignore[no-untyped-def]
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    return resolve_url(x_url or config.attributes.get("url"))


def _ours(name: str | None, type_: str, _parents: object) -> bool:
    """Autogenerate and ``check`` look at our tables only: a shared database holds others."""
    return type_ != "table" or name in metadata.tables


def _configure(dialect_name: str, **kwargs: object) -> None:
    context.configure(
        target_metadata=_TARGET,
        version_table=version_table(),
        include_name=_ours,
        compare_type=True,
        transactional_ddl=dialect_name not in _NO_TRANSACTIONAL_DDL,
        transaction_per_migration=True,
        on_version_apply=stamp_sqlite_header,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """``--sql``: print the SQL for a DBA instead of running it."""
    url = _url()
    _configure(url.get_backend_name(), url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    """Run the chain on a connection, under the database's migration lock, every
    statement bounded (``Timeouts.ddl_lock_seconds`` and the rest: docs/production.md,
    "Migrations on a live database").

    A caller that only compares (``uniqc-store check`` sets ``compare_only``)
    writes nothing, so it takes no lock (on SQLite, creates no lock file).
    """
    if config.attributes.get("compare_only"):
        _configure(connection.dialect.name, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    timeouts = migration_timeouts(config)
    with migration_lock(connection, timeouts), ddl_bounds(connection, timeouts):
        prepare_database(connection)
        connection.commit()
        _configure(connection.dialect.name, connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        if connection.in_transaction():
            connection.commit()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        run_migrations_on(given)
        return
    engine = (  # run on purpose: may add our tables beside an application's own
        given
        if isinstance(given, Engine)
        else create_store_engine(_url(), foreign_keys=False, allow_foreign_tables=True)
    )
    try:
        with migration_connection(engine, migration_timeouts(config).migration_seconds) as conn:
            run_migrations_on(conn)
    finally:
        if engine is not given:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
