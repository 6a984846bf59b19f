"""The dialect table: one record per family, read by the executor and the translator.

The codes' meaning on real servers is tested where they happen (test_database_errors,
test_bounds, test_stored_rows' deadlock); here, the table's own rules."""

from __future__ import annotations

import sqlite3

import pytest

from uniqc_store.db.dialects import FAMILIES, MYSQL, POSTGRESQL, SQLITE, family_of, is_mysql


@pytest.mark.parametrize(
    ("backend", "family"),
    [("sqlite", SQLITE), ("postgresql", POSTGRESQL), ("mysql", MYSQL), ("mariadb", MYSQL)],
)
def test_every_backend_has_one_family(backend: str, family: object) -> None:
    assert family_of(backend) is family
    assert is_mysql(backend) is (family is MYSQL)


def test_an_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="not 'oracle' databases"):
        family_of("oracle")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_what_is_retried_is_busy_once_the_retries_are_spent(family: object) -> None:
    assert family.retry <= family.busy  # type: ignore[attr-defined]


def test_a_lock_wait_that_timed_out_is_not_retried() -> None:
    """1205 waited its whole bound: running it again would wait as long again."""
    assert 1205 in MYSQL.busy and 1205 not in MYSQL.retry


def test_codes_come_from_the_drivers_exceptions() -> None:
    with sqlite3.connect(":memory:") as conn:
        try:
            conn.execute("SELECT * FROM nowhere")
        except sqlite3.OperationalError as exc:
            assert SQLITE.code_of(exc) == 1  # SQLITE_ERROR, the primary code
    assert MYSQL.code_of(Exception(1213, "Deadlock found")) == 1213
    assert MYSQL.code_of(Exception("no number")) is None
    assert SQLITE.code_of(None) is None and POSTGRESQL.code_of(Exception()) is None


def test_a_sqlstate_class_marks_a_whole_kind_unavailable() -> None:
    assert POSTGRESQL.is_unavailable("08006") and POSTGRESQL.is_unavailable("25006")
    assert not POSTGRESQL.is_unavailable("23505") and not POSTGRESQL.is_unavailable(None)
    assert SQLITE.is_unavailable(11) and not SQLITE.is_unavailable(5)


def test_a_trigger_reloading_on_galera_asks_for_retry_but_other_syntax_errors_do_not() -> None:
    """MariaDB's error as pymysql raises it (seen in the Galera soak): 1064 with the
    trigger text is run again; a 1064 of a real syntax error is not."""
    import pymysql

    reloading = pymysql.err.ProgrammingError(
        1064, "Unknown trigger has an error in its body: 'Query was empty'"
    )
    syntax = pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax")
    assert MYSQL.asks_for_retry(reloading)
    assert not MYSQL.asks_for_retry(syntax)
    assert MYSQL.asks_for_retry(pymysql.err.OperationalError(1213, "Deadlock found"))
    assert not POSTGRESQL.asks_for_retry(reloading)
