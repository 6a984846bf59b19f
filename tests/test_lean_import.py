"""``import uniqc_store`` loads neither Alembic, the command line's or API's libraries,
the ORM nor the MySQL dialect (issue 15 point 7); each loads when something needs it,
and the schema compiles on MySQL as if the tables had declared their options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: Modules the repository does not need to import, or to use a SQLite store at head.
HEAVY = (
    "alembic",
    "mako",
    "click",
    "rich",
    "fastapi",
    "uvicorn",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.mysql",
)


def loaded_after(code: str, cwd: Path) -> set[str]:
    probe = f"{code}; import sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    )
    return set(out.stdout.split()) & set(HEAVY)


def test_import_is_lean(tmp_path: Path) -> None:
    assert loaded_after("import uniqc_store", tmp_path) == set()
    assert loaded_after("from uniqc_store import TaskStore, TaskInfo", tmp_path) == set()


def test_using_a_store_at_head_stays_lean(tmp_path: Path) -> None:
    from uniqc_store import TaskStore

    TaskStore(tmp_path).close()  # created (and migrated) here, in this process
    code = (
        "from uniqc_store import TaskInfo, TaskShard, TaskStore\n"
        f"s = TaskStore({str(tmp_path)!r})\n"
        "s.save(TaskInfo(task_id='t', backend='b', status='success', result={'a': 1}))\n"
        "s.save_shard(TaskShard(uniqc_task_id='t', shard_index=0, platform_task_id='p',"
        " backend='b', status='success'))\n"
        "assert s.get('t').result == {'a': 1} and s.count() == 1 and len(s.list()) == 1\n"
        "assert s.archive_task('t') and s.restore_task('t') and s.get_shards('t')\n"
        "s.archive_expired(hours=0)\n"
        "s.close()"
    )
    assert loaded_after(code, tmp_path) == set()


def test_a_migration_loads_alembic_when_needed(tmp_path: Path) -> None:
    code = f"import uniqc_store; uniqc_store.TaskStore({str(tmp_path / 'new')!r}).close()"
    assert "alembic" in loaded_after(code, tmp_path)


def test_a_session_loads_the_orm_when_needed(tmp_path: Path) -> None:
    code = f"import uniqc_store; uniqc_store.TaskStore({str(tmp_path)!r}).session().close()"
    assert loaded_after(code, tmp_path) >= {"sqlalchemy.orm"}


def test_mysql_ddl_compiled_without_an_engine_has_the_table_options(tmp_path: Path) -> None:
    """The first MySQL/MariaDB compile in a fresh process renders the options the
    tables carry in ``info`` (utf8mb4, binary collation, InnoDB) and LONGTEXT payloads."""
    code = (
        "from sqlalchemy.dialects import mysql\n"
        "from sqlalchemy.schema import CreateTable\n"
        "from uniqc_store.schema.tables import metadata\n"
        "for dialect in (mysql.dialect(), mysql.dialect(is_mariadb=True)):\n"
        "    for table in metadata.sorted_tables:\n"
        "        print(CreateTable(table).compile(dialect=dialect), '@@')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    statements = [ddl for ddl in out.stdout.split("@@") if ddl.strip()]
    assert len(statements) == 8
    for ddl in statements:
        assert "ENGINE=InnoDB" in ddl
        assert "CHARSET=utf8mb4" in ddl
        assert "COLLATE utf8mb4_bin" in ddl.rsplit(")", 1)[1]  # the table's, not a column's
        assert "result_json LONGTEXT COLLATE utf8mb4_bin" in ddl
