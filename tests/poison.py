"""A real trigger that makes the database refuse one row's write: an error part-way
through a call made of chunks (retention, the calls on many ids), on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from uniqc_store import TaskStore


@contextmanager
def poisoned(
    store: TaskStore,
    backend: str,
    timing: str,
    task_id: str,
    table: str = "archived_tasks",
    column: str = "task_id",
) -> Iterator[None]:
    """While open, the database refuses ``timing`` (``INSERT`` or ``DELETE``) of the
    ``table`` rows whose ``column`` is ``task_id`` (the statement fails whole). On
    SQLite the refusal is a constraint error (``RAISE(ABORT)``), as a key clash is."""
    row = "NEW" if timing == "INSERT" else "OLD"
    with store.engine.begin() as conn:
        if backend == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE {timing} ON {table} "
                f"WHEN {row}.{column} = '{task_id}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )
        elif backend == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {row}.{column} = '{task_id}' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                f"RETURN {row}; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE {timing} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION poison()"
            )
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER poison BEFORE {timing} ON {table} FOR EACH ROW "
                f"BEGIN IF {row}.{column} = '{task_id}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned'; END IF; END"
            )
    try:
        yield
    finally:
        with store.engine.begin() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"DROP TRIGGER poison ON {table}")
                conn.exec_driver_sql("DROP FUNCTION poison()")
            else:
                conn.exec_driver_sql("DROP TRIGGER poison")
