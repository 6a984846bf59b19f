"""Revision 0010 (``tasks_update_time_idx``, archive_expired's range read) up and down
with data on every engine, the candidates' read answered from that index, and the
stamps the read must still find (every form ``_parse_time`` reads, ``''`` included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import URL, Engine, inspect, update

from tests.migrations.test_revision_0007 import table_rows
from uniqc_store import TaskInfo, TaskStore
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import database_version, downgrade, upgrade
from uniqc_store.repository import archive
from uniqc_store.schema.tables import tasks

INDEX = "tasks_update_time_idx"


def indexes(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            str(i["name"]): [str(c) for c in i["column_names"]]
            for i in inspect(conn).get_indexes("tasks")
        }


def stamp(store: TaskStore, task_id: str, value: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(update_time=value))


def in_zone(moment: datetime, hours: int, minutes: int = 0) -> datetime:
    return moment.astimezone(timezone(timedelta(hours=hours, minutes=minutes)))


def test_0010_down_and_up_with_data(fresh_url: URL) -> None:
    engine = create_store_engine(fresh_url, foreign_keys=False)
    upgrade(engine, "0010")
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        assert database_version(conn) == 10
        if sqlite:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 10
    assert indexes(engine)[INDEX] == ["update_time", "task_id"]
    store = TaskStore(url=fresh_url, auto_migrate=True)
    store.save_many(TaskInfo(task_id=f"uqt_{i:03d}", backend="b") for i in range(30))
    store.archive_task("uqt_000")
    store.close()
    before = table_rows(engine)

    downgrade(engine, "0009")
    with engine.connect() as conn:
        assert database_version(conn) == 9
        if sqlite:
            assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 9
    assert INDEX not in indexes(engine)
    assert table_rows(engine) == before
    upgrade(engine, "0010")
    assert table_rows(engine) == before and INDEX in indexes(engine)
    engine.dispose()


def plan(engine: Engine, cutoff: datetime) -> str:
    """The engine's plan of the candidates' read, as text."""
    stmt = archive.EXPIRY_CANDIDATES.params(**archive.candidate_bounds(cutoff))
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.begin() as conn:
        name = engine.dialect.name
        if name == "postgresql":  # a few rows: a sequential scan would be cheaper
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        explain = "EXPLAIN QUERY PLAN" if name == "sqlite" else "EXPLAIN"
        rows = conn.exec_driver_sql(f"{explain} {sql}".replace("%", "%%"))
        return " ".join(str(value) for row in rows for value in row)


def test_expired_tasks_are_found_by_a_range_of_the_index(fresh_url: URL) -> None:
    store = TaskStore(url=fresh_url, auto_migrate=True)
    store.save_many(TaskInfo(task_id=f"uqt_{i:03d}", backend="b") for i in range(40))
    if store.dialect != "sqlite":
        with store.engine.begin() as conn:
            analyze = "ANALYZE" if store.dialect == "postgresql" else "ANALYZE TABLE"
            conn.exec_driver_sql(f"{analyze} tasks")
    found = plan(store.engine, datetime.now(timezone.utc))
    store.close()
    assert INDEX in found, found
    assert "SCAN tasks " not in found + " " and "Seq Scan" not in found, found


def test_every_stamp_form_that_expired_is_found(fresh_url: URL) -> None:
    store = TaskStore(url=fresh_url, auto_migrate=True)
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(hours=100), now - timedelta(hours=1)
    forms = {  # expired: archived
        "uqt_utc": old.isoformat(),
        "uqt_zulu": old.isoformat().replace("+00:00", "Z"),
        "uqt_naive": old.replace(tzinfo=None).isoformat(),
        "uqt_space": old.isoformat(sep=" "),
        "uqt_lower": old.isoformat(sep="t"),
        # local time ahead of UTC: its text sorts after the cut-off, the time is before it
        "uqt_east": old.astimezone(timezone(timedelta(hours=14))).isoformat(),
        "uqt_east_t": in_zone(now - timedelta(hours=73), 23).isoformat(sep="t"),
        # the largest offset there is: its local date is the cut-off's next day's
        "uqt_east_edge": in_zone(now - timedelta(hours=72, seconds=30), 23, 59).isoformat(),
        # on the cut-off's date, after it as text ("t" > "T"), before it as time
        "uqt_lower_edge": (now - timedelta(hours=72, minutes=5)).isoformat(sep="t"),
        "uqt_blank": "",  # its submit_time counts
    }
    kept = {  # not expired: left alone
        "uqt_new": recent.isoformat(),
        "uqt_new_zulu": recent.isoformat().replace("+00:00", "Z"),
        # local time behind UTC: its text sorts before the cut-off, the time is after it
        "uqt_west": in_zone(now - timedelta(hours=65), -12).isoformat(),
        "uqt_garbage": "yesterday",
    }
    store.save_many(
        TaskInfo(task_id=t, backend="b", status="success", submit_time=old.isoformat())
        for t in [*forms, *kept]
    )
    store.save(TaskInfo("uqt_blank_new", "b", status="success", submit_time=recent.isoformat()))
    for task_id, value in {**forms, **kept, "uqt_blank_new": ""}.items():
        stamp(store, task_id, value)
    outcome = store.archive_expired(hours=72)
    store.close()
    assert outcome["archived"] == sorted(forms)
