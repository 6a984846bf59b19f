"""Revision 0006 (NO PAD key collations on MySQL/MariaDB) up and down with data on every
engine, its refused downgrade, a half-applied run repeated, and the DDL it and the
tables give MySQL 8 (compiled only: no MySQL server runs here) and MariaDB."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from alembic import op
from click.testing import CliRunner
from sqlalchemy import URL, Connection, Engine, Integer, inspect, text
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import CompileError
from sqlalchemy.schema import CreateTable

from tests.alembic_runner import offline_upgrade, run_alembic
from uniqc_store import StoreError, TaskInfo, TaskShard, TaskStore
from uniqc_store.cli.commands import main
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.schema.tables import metadata
from uniqc_store.schema.types import exact_key_collation

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("tasks", "archived_tasks", "task_shards", "archived_task_shards")
KEY_COLUMNS = {
    "tasks": ["task_id", "backend", "status", "submit_time"],
    "archived_tasks": ["task_id", "backend", "status", "submit_time"],
    "task_shards": ["uniqc_task_id", "platform_task_id", "backend", "status"],
    "archived_task_shards": ["uniqc_task_id", "platform_task_id", "backend", "status"],
}
#: The TEXT columns compared with them (timestamps), converted too.
TIME_COLUMNS = {
    "tasks": ["update_time"],
    "archived_tasks": ["update_time", "archived_at"],
    "task_shards": ["submit_time", "update_time"],
    "archived_task_shards": ["submit_time", "update_time", "archived_at"],
}
FOREIGN_KEY = "fk_task_shards_uniqc_task_id_tasks"


def revision_0006() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "revision_0006", ROOT / "alembic" / "versions" / "0006_exact_keys.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def collations(conn: Connection) -> dict[str, list[str]]:
    """Each table's text columns (in order) as ``name collation``."""
    found: dict[str, list[str]] = {}
    for table, column, collation in conn.execute(
        text(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND collation_name IS NOT NULL"
            " AND table_name IN :tables ORDER BY table_name, ordinal_position"
        ).bindparams(tables=TABLES)
    ):
        found.setdefault(table, []).append(f"{column} {collation}")
    return found


def expected_collations(collation: str) -> dict[str, list[str]]:
    """Key and timestamp columns in ``collation``, payloads in utf8mb4_bin, as the
    tables order them."""
    expected: dict[str, list[str]] = {}
    for table in metadata.sorted_tables:
        converted = KEY_COLUMNS[table.name] + TIME_COLUMNS[table.name]
        expected[table.name] = [
            f"{c.name} {collation if c.name in converted else 'utf8mb4_bin'}"
            for c in table.columns
            if not isinstance(c.type, Integer)
        ]
    return expected


def rows(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the four tables, sorted (exactly: Python compares the strings)."""
    return {t: sorted(tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}"))) for t in TABLES}


def insert(conn: Connection, table: str, **values: object) -> None:
    names = ", ".join(values)
    marks = ", ".join(f":{n}" for n in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)


def task(task_id: str, **extra: object) -> dict[str, object]:
    return {"task_id": task_id, "backend": "b", "status": "success", "submit_time": "t"} | {
        "update_time": "t",
        **extra,
    }


def shard(parent: str, index: int, platform_id: str, **extra: object) -> dict[str, object]:
    return {
        "uniqc_task_id": parent,
        "shard_index": index,
        "platform_task_id": platform_id,
        "backend": "b",
        "status": "success",
        "submit_time": "t",
        "update_time": "t",
        **extra,
    }


def seed_at_0005(engine: Engine) -> None:
    """Rows at 0005: plain ids, padded ids that are distinct on every engine, and on
    MySQL shards whose parent id matches only up to trailing spaces (PAD SPACE let
    them in; elsewhere the foreign key or the store would not)."""
    with engine.begin() as conn:
        insert(conn, "tasks", **task("uqt_a"))
        insert(conn, "tasks", **task("uqt_b "))
        insert(conn, "task_shards", **shard("uqt_a", 0, "p-a"))
        insert(conn, "task_shards", **shard("uqt_b ", 0, "p-b "))
        insert(conn, "archived_tasks", **task("uqt_c", archived_at="t"))
        insert(conn, "archived_task_shards", **shard("uqt_c", 0, "p-c", archived_at="t"))
        if on_mysql(engine):
            insert(conn, "task_shards", **shard("uqt_a  ", 1, "p-a1"))
            insert(conn, "task_shards", **shard("uqt_b", 1, "p-b1"))
            insert(conn, "archived_task_shards", **shard("uqt_c ", 1, "p-c1", archived_at="t"))
            insert(conn, "archived_task_shards", **shard("uqt_z ", 0, "p-z", archived_at="t"))


def test_0006_up_and_down_with_data(fresh_url: URL) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0005")
    seed_at_0005(engine)
    with engine.connect() as conn:
        before = rows(conn)
        if on_mysql(engine):
            assert collations(conn) == expected_collations("utf8mb4_bin")

    upgrade(engine, "0006")
    with engine.connect() as conn:
        assert database_version(conn) == 6
        after = rows(conn)
        if on_mysql(engine):
            assert collations(conn) == expected_collations("utf8mb4_nopad_bin")
            fks = inspect(conn).get_foreign_keys("task_shards")
            assert [(k["name"], k["options"]) for k in fks] == [
                (FOREIGN_KEY, {"ondelete": "CASCADE"})
            ]
    if on_mysql(engine):  # shards re-pointed at their parent's exact id, nothing else
        repointed = {"uqt_a  ": "uqt_a", "uqt_b": "uqt_b ", "uqt_c ": "uqt_c"}
        expected = {
            t: sorted((repointed.get(str(r[0]), r[0]), *r[1:]) for r in before[t]) for t in TABLES
        }
        assert after == expected
        assert after["archived_task_shards"][-1][:3] == ("uqt_z ", 0, "p-z")  # no parent: kept
    else:
        assert after == before

    upgrade(engine)
    store = TaskStore(url=fresh_url)  # at head: the padded twin is a task of its own
    store.save(TaskInfo(task_id="uqt_a ", backend="b"))
    assert store.count() == 3
    assert [s.platform_task_id for s in store.get_shards("uqt_a")] == (
        ["p-a", "p-a1"] if on_mysql(engine) else ["p-a"]
    )
    assert store.get_shards("uqt_a ") == []
    assert store.delete("uqt_a ") is True
    store.close()

    downgrade(engine, "0005")
    with engine.connect() as conn:
        assert database_version(conn) == 5
        assert rows(conn) == after
        if on_mysql(engine):
            assert collations(conn) == expected_collations("utf8mb4_bin")
            assert [k["name"] for k in inspect(conn).get_foreign_keys("task_shards")] == [
                FOREIGN_KEY
            ]
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 5
    upgrade(engine, "0006")  # and up again
    with engine.connect() as conn:
        assert rows(conn) == after
    engine.dispose()


def seed_collisions(store: TaskStore) -> None:
    for task_id in ("uqt_x", "uqt_x ", "uqt_x  ", "uqt_y  ", "uqt_y   "):
        store.save(TaskInfo(task_id=task_id, backend="b", status="success"))
    store.save(TaskInfo(task_id="uqt_s", backend="b", status="success"))
    store.save_shard(TaskShard("uqt_s", 0, "p", "b"))
    store.archive_task("uqt_s")
    with store.engine.begin() as conn:  # an orphan archived shard twin: keys (id, index)
        insert(conn, "archived_task_shards", **shard("uqt_s ", 0, "q", archived_at="t"))
        insert(conn, "archived_task_shards", **shard("uqt_s  ", 1, "q", archived_at="t"))


def test_a_downgrade_that_would_merge_ids_is_refused_naming_them(fresh_url: URL) -> None:
    store = TaskStore(url=fresh_url, auto_migrate=True)
    seed_collisions(store)
    engine = create_store_engine(fresh_url, foreign_keys=False)
    with engine.connect() as conn:
        before = rows(conn)
    if not on_mysql(engine):  # SQLite and PostgreSQL at 0005 compare exactly too
        downgrade(engine, "0005")
        with engine.connect() as conn:
            assert database_version(conn) == 5 and rows(conn) == before
        store.close()
        engine.dispose()
        return

    with pytest.raises(StoreError) as refused:
        downgrade(engine, "0005")
    message = str(refused.value)
    assert "cannot downgrade below 0006" in message and "nothing was changed" in message
    assert "tasks: 'uqt_x' and 'uqt_x ' and 'uqt_x  '" in message
    assert "tasks: 'uqt_y  ' and 'uqt_y   '" in message
    assert "archived_task_shards: ('uqt_s', 0) and ('uqt_s ', 0)" in message
    assert "uqt_s  '" not in message  # index 1 collides with nothing
    assert "\n" not in message  # one line: the CLI shows its first line
    with engine.connect() as conn:
        assert database_version(conn) == 6 and rows(conn) == before
        assert collations(conn) == expected_collations("utf8mb4_nopad_bin")
        assert [k["name"] for k in inspect(conn).get_foreign_keys("task_shards")] == [FOREIGN_KEY]

    url = fresh_url.render_as_string(hide_password=False)
    cli = run_alembic("-x", f"url={url}", "downgrade", "0005")
    assert cli.returncode == 1 and "'uqt_x' and 'uqt_x '" in cli.stderr
    ours = CliRunner().invoke(main, ["downgrade", "0005", "--url", url])
    assert ours.exit_code != 0 and ours.output.startswith("error: cannot downgrade below 0006")
    assert ours.output.count("\n") == 1 and "'uqt_y  ' and 'uqt_y   '" in ours.output

    for task_id in ("uqt_x ", "uqt_x  ", "uqt_y   "):
        assert store.delete(task_id) is True
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM archived_task_shards WHERE uniqc_task_id = 'uqt_s '"))
    downgrade(engine, "0005")
    with engine.connect() as conn:
        assert database_version(conn) == 5
        assert collations(conn) == expected_collations("utf8mb4_bin")
        assert {r[0] for r in conn.execute(text("SELECT task_id FROM tasks"))} == {
            "uqt_x",
            "uqt_y  ",
        }
    store.close()
    engine.dispose()


def test_a_0006_stopped_half_way_completes_when_run_again(
    fresh_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    if not on_mysql(engine):
        engine.dispose()
        pytest.skip("0006 changes tables on MySQL/MariaDB only")
    upgrade(engine, "0005")
    seed_at_0005(engine)
    real = op.execute

    def failing(sql: object, *args: object, **kwargs: object) -> object:
        if str(sql).startswith("ALTER TABLE task_shards"):
            raise RuntimeError("injected failure in 0006, tasks converted, the key dropped")
        return real(sql, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(op, "execute", failing)
        with pytest.raises(RuntimeError, match="injected"):
            upgrade(engine)
    with engine.connect() as conn:  # MySQL committed each DDL: half of it is there
        assert database_version(conn) == 5
        assert inspect(conn).get_foreign_keys("task_shards") == []
        assert collations(conn)["tasks"] == expected_collations("utf8mb4_nopad_bin")["tasks"]
    upgrade(engine, "0006")
    with engine.connect() as conn:
        assert database_version(conn) == 6
        assert collations(conn) == expected_collations("utf8mb4_nopad_bin")
        assert [k["name"] for k in inspect(conn).get_foreign_keys("task_shards")] == [FOREIGN_KEY]
        parents = {r[0] for r in conn.execute(text("SELECT uniqc_task_id FROM task_shards"))}
    assert parents == {"uqt_a", "uqt_b "}
    engine.dispose()


# --- MySQL 8 and MariaDB DDL, compiled (no MySQL server can run here) ----------------


def mysql_dialect(version: tuple[int, ...] | None, *, mariadb: bool = False) -> mysql.dialect:
    dialect = mysql.dialect(is_mariadb=mariadb)
    dialect.server_version_info = version
    return dialect


@pytest.mark.parametrize(
    ("version", "mariadb", "collation"),
    [
        ((8, 0, 17), False, "utf8mb4_0900_bin"),
        ((8, 4, 3), False, "utf8mb4_0900_bin"),
        ((9, 1, 0), False, "utf8mb4_0900_bin"),
        (None, False, "utf8mb4_0900_bin"),  # not connected (--sql): MySQL 8 assumed
        ((10, 11, 19), True, "utf8mb4_nopad_bin"),
        (None, True, "utf8mb4_nopad_bin"),
    ],
)
def test_the_tables_compile_the_servers_no_pad_collation(
    version: tuple[int, ...] | None, mariadb: bool, collation: str
) -> None:
    dialect = mysql_dialect(version, mariadb=mariadb)
    for table in metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect))
        for column in KEY_COLUMNS[table.name]:
            assert f"\t{column} VARCHAR(255) COLLATE {collation} NOT NULL" in ddl, ddl
        for column in TIME_COLUMNS[table.name]:
            assert f"\t{column} TEXT COLLATE {collation} NOT NULL" in ddl, ddl
        assert "result_json LONGTEXT COLLATE utf8mb4_bin," in ddl
    assert revision_0006()._no_pad_collation(dialect) == exact_key_collation(dialect)


def test_mysql_without_a_no_pad_collation_is_refused() -> None:
    old = mysql_dialect((8, 0, 16))
    with pytest.raises(CompileError, match=r"MySQL 8\.0\.16 has no NO PAD binary collation"):
        CreateTable(metadata.tables["tasks"]).compile(dialect=old)
    with pytest.raises(StoreError, match=r"MySQL 8\.0\.16 has no NO PAD.*nothing was changed"):
        revision_0006()._no_pad_collation(old)
    with pytest.raises(StoreError, match=r"MySQL 5\.7\.44"):
        revision_0006()._no_pad_collation(mysql_dialect((5, 7, 44)))


@pytest.mark.parametrize(
    ("url", "collation"),
    [
        ("mysql+pymysql://u@127.0.0.1/db", "utf8mb4_0900_bin"),
        ("mariadb+pymysql://u@127.0.0.1/db", "utf8mb4_nopad_bin"),
    ],
)
def test_0006_as_sql_for_mysql_8_and_mariadb(url: str, collation: str) -> None:
    """``--sql`` renders 0006 without a server: the DDL a DBA would run on each."""
    up = run_alembic("-x", f"url={url}", "upgrade", "0005:0006", "--sql")
    assert up.returncode == 0, up.stderr
    sql = up.stdout
    assert "ALTER TABLE task_shards DROP FOREIGN KEY fk_task_shards_uniqc_task_id_tasks" in sql
    for table, columns in KEY_COLUMNS.items():
        modify = ", ".join(
            [
                f"MODIFY {c} VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
                for c in columns
            ]
            + [
                f"MODIFY {c} TEXT CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
                for c in TIME_COLUMNS[table]
            ]
        )
        assert f"ALTER TABLE {table} {modify};" in sql
    assert (
        "ALTER TABLE task_shards ADD CONSTRAINT fk_task_shards_uniqc_task_id_tasks FOREIGN KEY"
        "(uniqc_task_id) REFERENCES tasks (task_id) ON DELETE CASCADE" in sql
    )
    assert sql.index("DROP FOREIGN KEY") < sql.index("ALTER TABLE tasks MODIFY")
    assert sql.index("ALTER TABLE archived_task_shards MODIFY") < sql.index("ADD CONSTRAINT")
    assert "UPDATE task_shards s JOIN tasks t ON t.task_id = s.uniqc_task_id" in sql
    down = run_alembic("-x", f"url={url}", "downgrade", "0006:0005", "--sql")
    assert down.returncode == 0, down.stderr
    assert "-- 0006 downgrade: first check" in down.stdout
    assert "COLLATE utf8mb4_bin NOT NULL" in down.stdout and collation not in down.stdout


@pytest.mark.parametrize("url", ["sqlite:///x.sqlite", "postgresql+psycopg://u@127.0.0.1/db"])
def test_0006_changes_nothing_on_sqlite_and_postgresql(url: str) -> None:
    sql, statements = offline_upgrade(url, "0005:0006")
    assert statements == [
        "UPDATE uniqc_store_alembic_version SET version_num='0006' "
        "WHERE uniqc_store_alembic_version.version_num = '0005';"
    ]
    if url.startswith("sqlite"):  # the revision id is the schema version here too
        assert "PRAGMA user_version = 6;" in sql
