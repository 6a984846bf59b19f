"""``python -m benchmarks.pre_ping``: what ``pool_pre_ping`` would cost a server ``get``.

The store leaves SQLAlchemy's pre-ping off (docs/production.md, Pools): it sends a
round trip on every checkout, and a connection the server dropped is retried anyway.
This times ``get`` on two stores over one scratch schema/database, with and without
``pool_pre_ping``, in interleaved rounds (the order flips each round), on the servers
named by ``UNIQC_TEST_POSTGRES_URL`` / ``UNIQC_TEST_MYSQL_URL``.
"""

from __future__ import annotations

import os
import statistics
import time

import sqlalchemy as sa

from uniqc_store import TaskInfo, TaskStore

SCRATCH = "uniqc_preping_bench"
ROUNDS, CALLS = 41, 300


def scratch(url: sa.URL, backend: str, create: bool) -> None:
    """Make (or drop) the scratch schema (PostgreSQL) / database (MariaDB)."""
    engine = sa.create_engine(url)
    kind = "SCHEMA" if backend == "postgresql" else "DATABASE"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"DROP {kind} IF EXISTS {SCRATCH}" + (" CASCADE" if kind == "SCHEMA" else "")
        )
        if create:
            conn.exec_driver_sql(f"CREATE {kind} {SCRATCH}")
    engine.dispose()


def measure(url: sa.URL, backend: str) -> tuple[float, float]:
    """Median microseconds per ``get`` without and with pre-ping."""
    if backend == "postgresql":
        target = url.update_query_dict({"options": f"-csearch_path={SCRATCH}"})
    else:
        target = url.set(database=SCRATCH)
    stores = {
        ping: TaskStore(url=target, auto_migrate=True, engine_options={"pool_pre_ping": ping})
        for ping in (False, True)
    }
    stores[False].save(TaskInfo(task_id="uqt_preping", backend="bench"))
    rounds: dict[bool, list[float]] = {False: [], True: []}
    for n in range(ROUNDS):
        for ping in (False, True) if n % 2 else (True, False):
            started = time.perf_counter()
            for _ in range(CALLS):
                stores[ping].get("uqt_preping")
            rounds[ping].append((time.perf_counter() - started) / CALLS * 1e6)
    for store in stores.values():
        store.close()
    return statistics.median(rounds[False]), statistics.median(rounds[True])


def main() -> int:
    for backend, env in (
        ("postgresql", "UNIQC_TEST_POSTGRES_URL"),
        ("mysql", "UNIQC_TEST_MYSQL_URL"),
    ):
        raw = os.environ.get(env)
        if not raw:
            print(f"{env} not set: {backend} skipped")
            continue
        url = sa.make_url(raw)
        scratch(url, backend, create=True)
        try:
            off, on = measure(url, backend)
        finally:
            scratch(url, backend, create=False)
        print(
            f"{backend}: get {off:.0f} us without pre-ping, {on:.0f} us with: {on / off - 1:+.0%}"
        )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
