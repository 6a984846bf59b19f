"""The orchestrator's probes: ``/api/live`` (the process answers) and ``/api/ready``
(the database is reachable and at this code's schema version, answered within a bound).

Both are public (no token: a probe has none, and they show no data) and answer
for any ``Host`` (Kubernetes sends the pod's IP as the host). Both run on the
event loop, not in the thread pool the routes share, so a pool full of calls
waiting for a hung database cannot hold the liveness answer: a database outage
makes the pod unready, never restarted.

The readiness check reads the schema version in a thread of its own and waits
for it at most ``bound_seconds`` (a frozen server keeps a call for the store's
``call_seconds``, 30 s by default, far longer than a probe waits). One check
runs at a time: probes arriving while it runs wait for that same check, so a
hung database never piles up threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

from fastapi import APIRouter, Depends, HTTPException

from uniqc_store.api.bodies import Live, Ready
from uniqc_store.api.errors import reject_unknown_query, responses
from uniqc_store.errors import StoreError
from uniqc_store.records import CURRENT_SCHEMA_VERSION
from uniqc_store.repository.store import TaskStore

LIVE_PATH = "/api/live"
READY_PATH = "/api/ready"
#: How long ``/api/ready`` waits for the database before it answers 503.
READY_SECONDS = 2.0
logger = logging.getLogger(__name__)


class NotReady(Exception):
    """Why the store cannot serve: said in the 503's detail (no credentials in it)."""


def ready_bound(seconds: object) -> float:
    """``create_app(ready_seconds=...)`` checked: a number of seconds above 0, at most 60."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"ready_seconds must be a number of seconds, not {seconds!r}")
    if not 0 < seconds <= 60:  # NaN fails this too
        raise ValueError(f"ready_seconds must be above 0 and at most 60, not {seconds!r}")
    return float(seconds)


class ReadinessCheck:
    """The database check behind ``/api/ready``: one at a time, awaited within a bound."""

    def __init__(self, store: TaskStore, bound_seconds: float = READY_SECONDS) -> None:
        self.store = store
        self.bound_seconds = ready_bound(bound_seconds)
        self._running: concurrent.futures.Future[int] | None = None
        self._lock = threading.Lock()

    def _current(self) -> concurrent.futures.Future[int]:
        """The check in progress, or a new one started in its own (daemon) thread."""
        with self._lock:
            if self._running is None or self._running.done():
                future: concurrent.futures.Future[int] = concurrent.futures.Future()
                worker = threading.Thread(
                    target=self._run, args=(future,), name="uniqc-store-ready", daemon=True
                )
                self._running = future
                worker.start()
            return self._running

    def _run(self, future: concurrent.futures.Future[int]) -> None:
        try:
            future.set_result(self.store.schema_version())
        except BaseException as exc:  # handed to the waiting probe, which answers 503
            future.set_exception(exc)

    async def schema_version(self) -> int:
        """The database's schema version, or ``NotReady`` saying why not."""
        waiting = asyncio.wrap_future(self._current())
        try:
            version = await asyncio.wait_for(asyncio.shield(waiting), self.bound_seconds)
        except asyncio.TimeoutError:
            raise NotReady(
                f"the task database did not answer within {self.bound_seconds:g} s"
            ) from None
        except StoreError as exc:
            logger.warning("readiness check failed: %s", exc)
            raise NotReady(
                f"the task database cannot be used ({type(exc).__name__}); see the server log"
            ) from None
        if version != CURRENT_SCHEMA_VERSION:
            raise NotReady(
                f"the task database is at schema version {version}, this server needs "
                f"{CURRENT_SCHEMA_VERSION}: run uniqc-store upgrade (or alembic upgrade head)"
            )
        return version


def probe_routes(store: TaskStore, bound_seconds: float = READY_SECONDS) -> APIRouter:
    """The two probes, as a router outside the app's dependencies (no token)."""
    check = ReadinessCheck(store, bound_seconds)
    router = APIRouter(dependencies=[Depends(reject_unknown_query)])

    @router.get(LIVE_PATH, response_model=Live, responses={422: responses(token=False)[422]})
    async def live() -> Live:
        """The process answers (the database is not consulted)."""
        return Live(status="alive")

    @router.get(READY_PATH, response_model=Ready, responses=responses(token=False))
    async def ready() -> Ready:
        """The database answers a read within the bound and is at this code's schema version."""
        try:
            version = await check.schema_version()
        except NotReady as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        return Ready(status="ready", schema_version=version, dialect=store.dialect)

    return router
