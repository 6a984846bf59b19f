"""The executor's round trips on PostgreSQL: a single read statement runs in
autocommit (one round trip, where psycopg's ``BEGIN`` and the pool's ``ROLLBACK``
would make it three), for ``TaskStore`` and ``AsyncTaskStore`` alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import URL, Engine, event

from tests.async_portal import async_url
from uniqc_store import AsyncTaskStore, TaskInfo, TaskStore


@pytest.fixture
def pg_url(module_url: URL) -> Iterator[URL]:
    if module_url.get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL: the other engines have no BEGIN of the driver's to save")
    yield module_url
    with TaskStore(url=module_url, auto_migrate=True) as store:
        store.clear_all()


def statuses_of_reads(engine: Engine) -> list[str]:
    """The driver's transaction status right after each SELECT on ``engine`` (IDLE: the
    statement ran in autocommit, no transaction to end afterwards)."""
    seen: list[str] = []

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            status = conn.connection.driver_connection.info.transaction_status
            seen.append(TransactionStatus(status).name)

    event.listen(engine, "after_cursor_execute", after)
    return seen


def test_taskstore_reads_in_autocommit(pg_url: URL) -> None:
    with TaskStore(url=pg_url, auto_migrate=True) as store:
        store.save(TaskInfo(task_id="uqt_ac", backend="b"))
        seen = statuses_of_reads(store.engine)
        assert store.get("uqt_ac") is not None
        assert [t.task_id for t in store.list(limit=5)] == ["uqt_ac"]
        assert store.count() == 1
    assert seen == ["IDLE"] * 3


def test_asynctaskstore_reads_in_autocommit(pg_url: URL) -> None:
    async def main() -> list[str]:
        async with AsyncTaskStore(url=async_url(pg_url)) as store:
            await store.save(TaskInfo(task_id="uqt_ac", backend="b"))
            seen = statuses_of_reads(store.engine.sync_engine)  # type: ignore[union-attr]
            assert await store.get("uqt_ac") is not None
            assert await store.count() == 1
            return seen

    assert asyncio.run(main()) == ["IDLE"] * 2
