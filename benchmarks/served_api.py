"""``python -m benchmarks.served_api``: the served API on the sync store or the async one.

Issue 26 point 6: one uvicorn worker (a process of its own, on loopback) serves
200 Server-Sent-Events clients holding ``/api/events`` open and 40 REST clients
calling ``GET /api/tasks/{id}`` and ``GET /api/tasks?limit=20&offset=N`` (a page
and its total) in a loop, while this process changes a task about once a second.
Two variants of the server:

- ``sync``: the real ``create_app`` over a ``TaskStore``, as ``uniqc-store serve``
  runs it (FastAPI runs the sync routes in its thread pool of 40; the feed polls
  its marker through the same pool).
- ``async``: the same app, with those three routes put in front of the real ones
  as ``async def`` routes over an ``AsyncTaskStore`` on the same database: the
  same store calls (``get``; ``list`` then ``count``), the same response models,
  shaping and redaction, middleware and error handlers, and the feed's marker
  read awaited through ``AsyncTaskStore.reading()`` instead of the thread pool.
  Porting the real app is not small (every route, the dashboard's queries over
  the store's private read units, the probes, the metrics and the feed take a
  ``TaskStore``), so the variant is built here.

Figures per run: REST latency p50/p95/p99 and requests per second; SSE delivery
lag (from this process's commit to a client reading the ``change`` event, the
first event after each write on each stream) p50/p99 and missed writes; errors;
the server's CPU (cores) and the client's. Each configuration runs ``--repeats``
times, sync and async taking turns (which goes first alternates), the load
average printed beside every run. Engines: a SQLite file, and the servers
whose URL is given (``--postgres`` / ``--mysql``, default
``UNIQC_TEST_POSTGRES_URL`` / ``UNIQC_TEST_MYSQL_URL``), in a scratch database
created and dropped here.

    python -m benchmarks.served_api [--seconds 15] [--repeats 2] [--sse 200] [--rest 40]
        [--engines sqlite,postgresql,mysql] [--stores sync,async] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from sqlalchemy import URL, Connection, make_url, text

from uniqc_store import AsyncTaskStore, TaskInfo, TaskStore
from uniqc_store.api.app import Limit, Offset, _detail, _page, create_app
from uniqc_store.api.bodies import TaskDetail, TaskPage
from uniqc_store.api.dashboard import _event_stream, close_streams
from uniqc_store.api.errors import BackendQuery, TaskIdPath
from uniqc_store.db.engine import create_store_engine
from uniqc_store.records import TaskStatus
from uniqc_store.repository.changes import ChangeFeed, ChangeSignal, open_signal

SEED_TASKS = 2000
WRITE_INTERVAL = 1.0  # one write a second: twice the feed's poll, so no write hides another
READY_TIMEOUT = 60.0
STARTUP_SECONDS = 30.0
log = logging.getLogger(__name__)


# -- the server ---------------------------------------------------------------


def build_app(url: URL, variant: str) -> FastAPI:
    """The app the server process runs: the real one, or the real one with the hot
    routes replaced by async routes over an ``AsyncTaskStore``."""
    store = TaskStore(url=url)
    app = create_app(store)
    if variant == "async":
        astore = AsyncTaskStore(url=as_async(url))
        _front_routes(app, lambda: _async_routes(app, store, astore))
    return app


def _front_routes(app: FastAPI, add: Callable[[], None]) -> None:
    """Add routes with the app's own dependencies, then move them in front of the real
    ones (Starlette takes the first route that matches)."""
    before = len(app.router.routes)
    add()
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:0] = added


def _async_routes(app: FastAPI, store: TaskStore, astore: AsyncTaskStore) -> None:
    feed = _async_feed(store, astore)
    app.state.change_feed = feed  # what close_streams ends

    @app.get("/api/tasks/{task_id}", response_model=TaskDetail)
    async def get_task(task_id: TaskIdPath) -> dict[str, Any]:
        info = await astore.get(task_id)
        if info is None:
            raise HTTPException(status_code=404, detail=f"Task '{task_id}' not found")
        return _detail(info)

    @app.get("/api/tasks", response_model=TaskPage)
    async def list_tasks(
        status: TaskStatus | None = None,
        backend: BackendQuery = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        found = await astore.list(status=status, backend=backend, limit=limit, offset=offset)
        total = await astore.count(status=status, backend=backend)
        return _page((found, total, None), limit, offset)

    @app.get("/api/events", response_class=StreamingResponse, include_in_schema=False)
    async def events() -> StreamingResponse:
        await astore.schema_version()
        return StreamingResponse(
            _event_stream(feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _async_feed(store: TaskStore, astore: AsyncTaskStore) -> Any:
    """The dashboard's ``ChangeFeed`` with its marker read awaited on the async store
    (the same marker query and poll loop as the real feed's)."""
    signal = open_signal(store)  # only for its marker query and exactness
    marker: Callable[[Connection], Hashable] = signal._marker  # type: ignore[attr-defined]

    class AsyncPolledFeed(ChangeFeed):
        async def _read_marker(self, _signal: ChangeSignal) -> Hashable:
            async with astore.reading() as conn:
                return await conn.run_sync(marker)

    return AsyncPolledFeed(lambda: signal)


def serve(url: URL, variant: str, port: int) -> None:
    import uvicorn

    app = build_app(url, variant)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            close_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False
    )
    Server(config).run()


# -- the clients ----------------------------------------------------------------


async def clients(base: str, ids: list[str], sse: int, rest: int, seconds: float) -> dict[str, Any]:
    """Open ``sse`` event streams; once every one is ready, say READY on stdout and run
    ``rest`` REST loops for ``seconds``; then the figures (times are ``time.monotonic``,
    which is one clock for every process of the machine)."""
    import httpx

    limits = httpx.Limits(max_connections=sse + rest + 10, max_keepalive_connections=sse + rest)
    timeout = httpx.Timeout(30.0, read=None)
    received: list[list[float]] = [[] for _ in range(sse)]
    errors = {"sse": 0, "rest": 0}
    ready = [asyncio.Event() for _ in range(sse)]
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def stream(n: int) -> None:
            try:
                async with client.stream("GET", "/api/events") as response:
                    if response.status_code != 200:
                        errors["sse"] += 1
                        return
                    async for line in response.aiter_lines():
                        if line == "event: change":
                            received[n].append(time.monotonic())
                        elif line == "event: ready":
                            ready[n].set()
            except httpx.HTTPError:
                if not stop.is_set():
                    errors["sse"] += 1
            finally:
                ready[n].set()

        streams = [asyncio.create_task(stream(n)) for n in range(sse)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), READY_TIMEOUT)
        print("READY", flush=True)
        latencies: list[float] = []
        end = time.monotonic() + seconds
        cpu = time.process_time()

        async def rest_loop(n: int) -> None:
            chance = random.Random(n)
            while time.monotonic() < end:
                if chance.random() < 0.5:
                    path = f"/api/tasks/{chance.choice(ids)}"
                else:
                    path = f"/api/tasks?limit=20&offset={chance.randrange(0, 200)}"
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors["rest"] += 1

        await asyncio.gather(*(rest_loop(n) for n in range(rest)))
        client_cpu = (time.process_time() - cpu) / seconds
        await asyncio.sleep(1.5)  # the last write's event is on its way
        stop.set()
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    connected = sum(1 for r in received if r) if received else 0
    return {
        "rest_seconds": latencies,
        "errors": errors,
        "received": received,
        "streams_with_events": connected,
        "client_cpu": client_cpu,
    }


# -- one run ----------------------------------------------------------------------


def as_async(url: URL) -> URL:
    backend = url.get_backend_name()
    driver = {"postgresql": "psycopg_async", "mysql": "aiomysql", "mariadb": "aiomysql"}
    return url if backend == "sqlite" else url.set(drivername=f"{backend}+{driver[backend]}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process, from ``/proc`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(url: URL, variant: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.served_api", "serve", "--variant", variant]
    command += ["--port", str(port), "--url", url.render_as_string(hide_password=False)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                httpx.get(f"{base}/api/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {variant} server did not start") from None
                time.sleep(0.1)
        yield process, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def _lags(writes: list[float], received: list[list[float]]) -> tuple[list[float], int]:
    """Per stream and write: the first event read after the commit (a ``change`` says
    "reload", so one event answers every write before its poll; events with no new
    write of ours before them, the cluster's or MariaDB's second announcement, answer
    nothing); a write no event followed by the end of the run is missed."""
    lags: list[float] = []
    missed = 0
    for events in received:
        for written in writes:
            first = next((t for t in events if t > written), None)
            if first is None:
                missed += 1
            else:
                lags.append(first - written)
    return lags, missed


def one_run(
    url: URL, variant: str, ids: list[str], args: argparse.Namespace, writer: TaskStore
) -> dict[str, Any]:
    """One server, its clients and this process's writes; the run's figures."""
    load = os.getloadavg()
    with _server(url, variant) as (process, base):
        command = [sys.executable, "-m", "benchmarks.served_api", "clients", "--base", base]
        command += ["--sse", str(args.sse), "--rest", str(args.rest)]
        command += ["--seconds", str(args.seconds)]
        client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(json.dumps(ids))
        client.stdin.close()
        if client.stdout.readline().strip() != "READY":
            client.wait()
            raise RuntimeError("the clients did not get their streams")
        cpu, started = _cpu_seconds(process.pid), time.monotonic()
        writes: list[float] = []
        chance = random.Random(variant)
        while time.monotonic() - started < args.seconds - WRITE_INTERVAL:
            time.sleep(WRITE_INTERVAL * (0.8 + 0.4 * chance.random()))
            info = writer.get(ids[0])
            assert info is not None
            info.metadata = {"written": len(writes)}
            writer.save(info)
            writes.append(time.monotonic())
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
        server_cpu = (_cpu_seconds(process.pid) - cpu) / (time.monotonic() - started)
        out = client.stdout.read()
        client.wait(timeout=60)
    figures = json.loads(out)
    rest = figures["rest_seconds"]
    lags, missed = _lags(writes, figures["received"])
    return {
        "variant": variant,
        "load": load,
        "rest_requests": len(rest),
        "rest_per_s": len(rest) / args.seconds,
        "rest_ms": {q: 1000 * _percentile(rest, p) for q, p in _QUANTILES.items()},
        "lag_ms": {q: 1000 * _percentile(lags, p) for q, p in _QUANTILES.items()},
        "writes": len(writes),
        "missed": missed,
        "errors": figures["errors"],
        "streams_with_events": figures["streams_with_events"],
        "server_cpu": server_cpu,
        "server_cpu_ms_per_request": 1000 * server_cpu * args.seconds / max(1, len(rest)),
        "write_times": writes,
        "received": figures["received"],
        "client_cpu": figures["client_cpu"],
    }


_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


# -- the databases ------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(url: URL) -> Iterator[URL]:
    """A scratch database on the server at ``url``, dropped afterwards."""
    name = f"uqt_served_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(url, isolation_level="AUTOCOMMIT")
    postgres = url.get_backend_name() == "postgresql"
    quoted = f'"{name}"' if postgres else f"`{name}`"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {quoted}"))
    try:
        yield url.set(database=name)
    finally:
        with admin.connect() as conn:
            if postgres:
                conn.execute(text(f"DROP DATABASE {quoted} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE {quoted}"))
        admin.dispose()


@contextlib.contextmanager
def database(engine: str, args: argparse.Namespace) -> Iterator[URL]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield URL.create("sqlite+pysqlite", database=str(Path(directory) / "tasks.sqlite"))
        return
    given = args.postgres if engine == "postgresql" else args.mysql
    variable = "UNIQC_TEST_POSTGRES_URL" if engine == "postgresql" else "UNIQC_TEST_MYSQL_URL"
    raw = given or os.environ.get(variable)
    if not raw:
        raise SystemExit(f"{engine}: give --{'postgres' if engine == 'postgresql' else 'mysql'}")
    with scratch_database(make_url(raw)) as url:
        yield url


def seed(url: URL, tasks: int) -> tuple[TaskStore, list[str]]:
    store = TaskStore(url=url, auto_migrate=True)
    ids = [f"uqt_served_{n:05d}" for n in range(tasks)]
    store.save_many(
        TaskInfo(
            task_id=i,
            backend=f"backend{n % 4}",
            status="success" if n % 3 else "running",
            shots=1000,
            metadata={"n": n},
            result={"counts": {"00": 500, "11": 500}},
        )
        for n, i in enumerate(ids)
    )
    return store, ids


# -- the command ----------------------------------------------------------------


def _row(engine: str, run: dict[str, Any]) -> str:
    rest, lag, errors = run["rest_ms"], run["lag_ms"], run["errors"]
    return (
        f"{engine:<10} {run['variant']:<5} {run['rest_per_s']:>6.0f} {rest['p50']:>6.1f} "
        f"{rest['p95']:>6.1f} {rest['p99']:>6.1f} {lag['p50']:>6.0f} {lag['p99']:>6.0f} "
        f"{run['missed']:>4}/{run['writes'] * len(run['received']):<5} "
        f"{errors['rest']:>3}/{errors['sse']:<3} {run['server_cpu']:>5.2f} "
        f"{run['server_cpu_ms_per_request']:>6.2f} {run['client_cpu']:>5.2f}  "
        + ", ".join(f"{x:.2f}" for x in run["load"])
    )


HEADER = (
    f"{'engine':<10} {'store':<5} {'req/s':>6} {'p50':>6} {'p95':>6} {'p99':>6} "
    f"{'lag50':>6} {'lag99':>6} {'missed':>10} {'err r/s':>7} {'srv':>5} {'ms/req':>6} "
    f"{'cli':>5}  load"
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--variant", choices=("sync", "async"), required=True)
        parser.add_argument("--port", type=int, required=True)
        given = parser.parse_args(argv[1:])
        serve(make_url(given.url), given.variant, given.port)
        return 0
    if argv[:1] == ["clients"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--base", required=True)
        parser.add_argument("--sse", type=int, required=True)
        parser.add_argument("--rest", type=int, required=True)
        parser.add_argument("--seconds", type=float, required=True)
        given = parser.parse_args(argv[1:])
        ids = json.loads(sys.stdin.read())
        figures = asyncio.run(clients(given.base, ids, given.sse, given.rest, given.seconds))
        print(json.dumps(figures))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per engine and store")
    parser.add_argument("--sse", type=int, default=200, help="event streams held open")
    parser.add_argument("--rest", type=int, default=40, help="concurrent REST loops")
    parser.add_argument("--tasks", type=int, default=SEED_TASKS, help="tasks in the store")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--stores", default="sync,async", help="the servers, comma-separated")
    parser.add_argument("--postgres", help="a sync PostgreSQL URL (a scratch database is made)")
    parser.add_argument("--mysql", help="a sync MySQL/MariaDB URL (a scratch database is made)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    print(
        f"{args.sse} event streams, {args.rest} REST loops, {args.seconds:g} s a run; "
        "REST ms, lag ms (commit to event read), missed writes (stream x write), "
        "errors REST/SSE, CPU cores of the server, its CPU ms per REST request, the client's cores"
    )
    print(HEADER, flush=True)
    report: dict[str, list[dict[str, Any]]] = {}
    for engine in args.engines.split(","):
        with database(engine, args) as url:
            writer, ids = seed(url, args.tasks)
            try:
                for repeat in range(args.repeats):
                    stores = args.stores.split(",")
                    for variant in stores if repeat % 2 == 0 else stores[::-1]:
                        run = one_run(url, variant, ids, args, writer)
                        report.setdefault(engine, []).append(run)
                        print(_row(engine, run), flush=True)
            finally:
                writer.close()
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
