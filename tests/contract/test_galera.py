"""The store on a private three-node MariaDB Galera cluster (the contract itself runs
there as the ``galera`` variant): writers on different nodes, certification
conflicts retried, and reads on one node seeing writes acknowledged on another
(``wsrep_sync_wait``, set on every connection of a store on a Galera node).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, event, text

from tests.conftest import CLUSTER_NODES, scratch_url
from uniqc_store import DatabaseBusyError, TaskInfo, TaskStore
from uniqc_store.db.drivers import GALERA_SYNC_WAIT

pytestmark = [pytest.mark.one_path, pytest.mark.galera]


@pytest.fixture
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[URL]]:
    """A fresh database on the cluster, one URL per node."""
    with scratch_url("galera", tmp_path, request) as url:
        yield CLUSTER_NODES[url.render_as_string(hide_password=False)]


def test_every_connection_of_a_store_on_galera_waits_for_causality(nodes: list[URL]) -> None:
    with TaskStore(url=nodes[0], auto_migrate=True) as store, store.reading() as conn:
        assert conn.execute(text("SELECT @@SESSION.wsrep_sync_wait")).scalar() == GALERA_SYNC_WAIT


def test_a_write_acknowledged_on_one_node_is_read_on_the_others(nodes: list[URL]) -> None:
    """200 saves on node 1, each read at once on nodes 2 and 3: none missed."""
    stores = [TaskStore(url=u, auto_migrate=True) for u in nodes]
    try:
        missed = 0
        for i in range(200):
            stores[0].save(TaskInfo(task_id=f"uqt_seen_{i}", backend="b"))
            missed += sum(s.get(f"uqt_seen_{i}") is None for s in stores[1:])
        assert missed == 0
    finally:
        for store in stores:
            store.close()


def test_modifications_racing_on_two_nodes_are_retried_and_none_is_lost(
    nodes: list[URL],
) -> None:
    """Threads on nodes 1 and 2 increment one task's counter with ``modify``: the losers
    of certification get 1213 (deadlock) and the store runs them again. The counter ends
    at the number of calls that returned: none acknowledged is lost, none applied twice.
    A call that lost all its attempts on this one hot row raises DatabaseBusyError with
    nothing written (docs/production.md, "Galera"); most return."""
    stores = [TaskStore(url=u, auto_migrate=True) for u in nodes[:2]]
    conflicts: list[int] = []

    def count_conflict(context: Any) -> None:
        if "1213" in str(context.original_exception):
            conflicts.append(1)

    for store in stores:
        event.listen(store.engine, "handle_error", count_conflict)
    stores[0].save(TaskInfo(task_id="uqt_counter", backend="b", metadata={"n": 0}))
    acknowledged: list[int] = []
    errors: list[BaseException] = []

    def bump(store: TaskStore) -> None:
        for _ in range(40):
            try:
                store.modify("uqt_counter", _increment)
                acknowledged.append(1)
            except DatabaseBusyError:
                pass  # every attempt lost certification: nothing written
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert errors == []
        task = stores[1].get("uqt_counter")
        assert task is not None and task.metadata["n"] == len(acknowledged)
        assert len(acknowledged) > 4 * 40 // 2
        assert conflicts, "no certification conflict happened: the race did not race"
    finally:
        for store in stores:
            store.close()


def _increment(task: TaskInfo) -> TaskInfo:
    task.metadata["n"] += 1
    return task


def test_the_change_signal_on_one_node_sees_writes_made_on_another(nodes: list[URL]) -> None:
    """The dashboard's live feed on node 1 moves when node 2 writes (statement counters
    count the node's own statements only; ``wsrep_last_committed`` counts the cluster's)."""
    from uniqc_store.repository.changes import open_signal

    one, two = (TaskStore(url=u, auto_migrate=True) for u in nodes[:2])
    signal = open_signal(one)
    try:
        before = signal.read()
        two.save(TaskInfo(task_id="uqt_elsewhere", backend="b"))
        assert signal.read() != before
    finally:
        signal.close()
        one.close()
        two.close()


def test_every_connection_of_an_async_store_on_galera_waits_for_causality(
    nodes: list[URL],
) -> None:
    """The async store (aiomysql) sets ``wsrep_sync_wait`` too, on its first connection
    and on every later one (a second connection is taken while the first is held)."""
    import asyncio

    from uniqc_store import AsyncTaskStore

    TaskStore(url=nodes[0], auto_migrate=True).close()
    async_url = nodes[0].set(drivername="mariadb+aiomysql")

    async def waits() -> list[Any]:
        async with (
            AsyncTaskStore(url=async_url) as store,
            store.reading() as first,
            store.reading() as second,
        ):
            return [
                await conn.scalar(text("SELECT @@SESSION.wsrep_sync_wait"))
                for conn in (first, second)
            ]

    assert asyncio.run(waits()) == [GALERA_SYNC_WAIT, GALERA_SYNC_WAIT]
