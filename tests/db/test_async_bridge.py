"""How many calls of an async server store run in the bridge at once: as many as its
pool keeps connections (``async_bridge.calls_in_bridge``), so ``engine_options``
sizes its concurrency (the throughput benchmark's knob) and the default keeps the
loop's lag within the loop-lag test's bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import URL, event, text
from sqlalchemy.pool import NullPool

from tests.async_portal import async_url
from uniqc_store import AsyncTaskStore
from uniqc_store.db import async_bridge

SLEEP = {"postgresql": "SELECT pg_sleep(0.3)", "mysql": "SELECT SLEEP(0.3)"}


@pytest.fixture
def server_url(module_url: URL) -> Iterator[URL]:
    if module_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite: one worker thread runs every call, one at a time")
    yield async_url(module_url)


def most_statements_at_once(url: URL, options: dict[str, Any] | None, blocks: int) -> int:
    """``blocks`` reading blocks at once, each running one 0.3 s sleep statement (a
    call of its own in the bridge): how many of those statements ran at once."""

    async def main() -> int:
        async with AsyncTaskStore(url=url, auto_migrate=True, engine_options=options) as store:
            running = most = 0

            def before(*_: Any) -> None:
                nonlocal running, most
                running += 1
                most = max(most, running)

            def after(*_: Any) -> None:
                nonlocal running
                running -= 1

            sync_engine = store.engine.sync_engine  # type: ignore[union-attr]
            event.listen(sync_engine, "before_cursor_execute", before)
            event.listen(sync_engine, "after_cursor_execute", after)

            async def sleeper() -> None:
                async with store.reading() as conn:
                    await conn.execute(text(SLEEP[store.dialect]))

            await asyncio.gather(*(sleeper() for _ in range(blocks)))
            return most

    return asyncio.run(main())


def test_the_pools_size_is_how_many_calls_run_at_once(server_url: URL) -> None:
    assert most_statements_at_once(server_url, {"pool_size": 6}, blocks=9) == 6


def test_by_default_four_calls_run_at_once(server_url: URL) -> None:
    assert async_bridge.ASYNC_POOL_SIZE == 4
    assert most_statements_at_once(server_url, None, blocks=6) == 4


def test_a_pool_without_a_size_runs_the_default_number_at_once() -> None:
    assert async_bridge.calls_in_bridge(NullPool(lambda: None)) == async_bridge.ASYNC_POOL_SIZE
