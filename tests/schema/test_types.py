"""The dialect-specific DDL of ``uniqc_store.schema.types``: MySQL's table options come
from a copy of the tables (the tables themselves never change), and SQLite's nullable
key is rendered from the column's parts. ``tests/db/test_engines.py`` checks that
``create_all`` builds what the chain builds on every engine; ``tests/test_lean_import.py``
that a fresh process compiles the options without having loaded the MySQL dialect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Table, Text, text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import CompileError
from sqlalchemy.schema import CreateTable, SchemaItem

from uniqc_store.schema.tables import metadata
from uniqc_store.schema.types import (
    MYSQL_OPTIONS,
    MYSQL_TABLE_ARGS,
    SQLITE_NULLABLE_PK,
    KeyText,
    with_mysql_options,
)

MYSQL_DIALECTS = (mysql.dialect(), mysql.dialect(is_mariadb=True))


def test_mysql_ddl_has_the_options_and_leaves_the_tables_unchanged() -> None:
    for dialect in MYSQL_DIALECTS:
        for table in metadata.sorted_tables:
            ddl = str(CreateTable(table).compile(dialect=dialect))
            options = ddl.rsplit(")", 1)[1]
            assert "ENGINE=InnoDB" in options and "CHARSET=utf8mb4" in options, ddl
            assert "COLLATE utf8mb4_bin" in options, ddl
    assert {name: dict(table.kwargs) for name, table in metadata.tables.items()} == {
        name: {} for name in metadata.tables
    }


def test_the_copy_is_made_once_and_carries_the_options() -> None:
    copy = with_mysql_options(metadata)
    assert with_mysql_options(metadata) is copy
    assert copy is not metadata and list(copy.tables) == list(metadata.tables)
    for name, table in copy.tables.items():
        assert dict(table.kwargs) == MYSQL_TABLE_ARGS
        assert [c.name for c in table.columns] == [c.name for c in metadata.tables[name].columns]


def test_the_copy_follows_a_table_added_later() -> None:
    own = MetaData()
    Table("a", own, Column("x", Integer, primary_key=True), info={MYSQL_OPTIONS: True})
    first = with_mysql_options(own)
    Table("b", own, Column("y", Integer, primary_key=True))  # not flagged: no options
    second = with_mysql_options(own)
    assert set(second.tables) == {"a", "b"} and second is not first
    assert dict(second.tables["b"].kwargs) == {}
    ddl = str(CreateTable(own.tables["a"]).compile(dialect=mysql.dialect()))
    assert "ENGINE=InnoDB" in ddl
    assert "ENGINE" not in str(CreateTable(own.tables["b"]).compile(dialect=mysql.dialect()))


def test_create_all_names_the_inline_foreign_keys_of_the_copy() -> None:
    """``create_all`` passes the foreign keys to create inline: the copy's are used."""
    shards = metadata.tables["task_shards"]
    (fk,) = shards.foreign_key_constraints
    with_fk = CreateTable(shards, include_foreign_key_constraints=[fk])
    without = CreateTable(shards, include_foreign_key_constraints=[])
    dialect = mysql.dialect()
    assert "FOREIGN KEY(uniqc_task_id) REFERENCES tasks" in str(with_fk.compile(dialect=dialect))
    assert "FOREIGN KEY" not in str(without.compile(dialect=dialect))


def test_mysql_ddl_from_many_threads_in_a_fresh_process(tmp_path: Path) -> None:
    """Threads compiling the first MySQL DDL of a process at once all get the options."""
    code = (
        "import threading\n"
        "from sqlalchemy.dialects import mysql\n"
        "from sqlalchemy.schema import CreateTable\n"
        "from uniqc_store.schema.tables import metadata\n"
        "barrier = threading.Barrier(8)\n"
        "out = []\n"
        "def work():\n"
        "    barrier.wait()\n"
        "    out.append([str(CreateTable(t).compile(dialect=mysql.dialect()))"
        " for t in metadata.sorted_tables])\n"
        "threads = [threading.Thread(target=work) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len(out) == 8 and all(o == out[0] for o in out)\n"
        "assert all('ENGINE=InnoDB' in ddl for ddl in out[0]), out[0]\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_sqlite_nullable_key_is_its_name_and_type() -> None:
    ddl = str(CreateTable(metadata.tables["tasks"]).compile(dialect=sqlite.dialect()))
    assert "\n\ttask_id TEXT, \n\tbackend TEXT NOT NULL, " in ddl
    assert "CONSTRAINT pk_tasks PRIMARY KEY (task_id)" in ddl
    shards = str(CreateTable(metadata.tables["task_shards"]).compile(dialect=sqlite.dialect()))
    assert "\tuniqc_task_id TEXT NOT NULL, " in shards  # not flagged: SQLAlchemy's rendering


def _flagged(*extra: SchemaItem, **column_kw: Any) -> Table:
    column = Column("k", KeyText, *extra, info={SQLITE_NULLABLE_PK: True}, **column_kw)
    return Table("t", MetaData(), column, Column("v", Text))


def test_sqlite_nullable_key_keeps_its_column_constraints() -> None:
    table = _flagged(CheckConstraint("k <> ''", name="k_nonempty"), primary_key=True)
    ddl = str(CreateTable(table).compile(dialect=sqlite.dialect()))
    assert "\tk TEXT CONSTRAINT k_nonempty CHECK (k <> ''), " in ddl


@pytest.mark.parametrize(
    "column_kw",
    [{"primary_key": False}, {"primary_key": True, "server_default": text("'x'")}],
    ids=["not-a-key", "with-a-default"],
)
def test_sqlite_nullable_key_refuses_what_it_would_drop(column_kw: dict[str, Any]) -> None:
    with pytest.raises(CompileError, match=SQLITE_NULLABLE_PK):
        CreateTable(_flagged(**column_kw)).compile(dialect=sqlite.dialect())
