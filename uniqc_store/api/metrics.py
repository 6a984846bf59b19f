"""``/metrics``: the store's figures in Prometheus's text format (prometheus-client).

The figures are counted in the db layer (``uniqc_store.db.metrics``, read as
``TaskStore.metrics``); :class:`StoreCollector` turns that snapshot into metric
families at each scrape. Every app has its own ``CollectorRegistry``, never the
process-global one, so two apps in one process (two stores, tests) never
collide. The route follows the API's token rule and Host rule like ``/api``.

Each process counts for itself: under several workers a scrape reaches one of
them (see "Metrics" in docs/production.md for what to do about it).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE,
)

from uniqc_store.api.errors import responses
from uniqc_store.db.metrics import MetricsSnapshot
from uniqc_store.repository.store import TaskStore

METRICS_PATH = "/metrics"
PREFIX = "uniqc_store"


class StoreCollector:
    """A prometheus-client collector over one store's ``metrics`` snapshot."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        snapshot = self.store.metrics
        yield from _operation_families(snapshot)
        yield from _engine_families(snapshot)


def _operation_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        f"{PREFIX}_calls", "Store calls, by operation (failed ones included).", labels=["operation"]
    )
    errors = CounterMetricFamily(
        f"{PREFIX}_errors",
        "Store calls that raised, by operation and exception class.",
        labels=["operation", "error"],
    )
    latency = HistogramMetricFamily(
        f"{PREFIX}_call_duration_seconds",
        "How long store calls took, by operation.",
        labels=["operation"],
    )
    bounds = [*(repr(float(b)) for b in snapshot.bucket_bounds), "+Inf"]
    for name, figures in sorted(snapshot.operations.items()):
        calls.add_metric([name], figures.calls)
        for error, count in sorted(figures.errors.items()):
            errors.add_metric([name, error], count)
        latency.add_metric(
            [name], list(zip(bounds, figures.buckets, strict=True)), sum_value=figures.seconds
        )
    yield from (calls, errors, latency)


def _engine_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    retries = CounterMetricFamily(
        f"{PREFIX}_retries",
        "Attempts run again: conflict (deadlock, serialization failure), dropped (the connection "
        "dropped before anything was committed), parent_moved (a shard's parent "
        "moved meanwhile).",
        labels=["reason"],
    )
    for reason, count in sorted(snapshot.retries.items()):
        retries.add_metric([reason], count)
    yield retries
    yield CounterMetricFamily(
        f"{PREFIX}_busy_waits",
        "Units of work that found their connection in use (SQLite: the store's connection "
        "held by another caller; servers: every pooled connection checked out).",
        value=snapshot.busy_waits,
    )
    yield CounterMetricFamily(
        f"{PREFIX}_busy_wait_seconds",
        "Time those units waited for their connection.",
        value=snapshot.busy_wait_seconds,
    )
    pool = snapshot.pool
    if pool is None:
        return
    yield GaugeMetricFamily(f"{PREFIX}_pool_size", "Connections the pool keeps.", value=pool.size)
    yield GaugeMetricFamily(
        f"{PREFIX}_pool_checked_out", "Pooled connections in use now.", value=pool.checked_out
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_pool_overflow", "Open connections beyond the pool's size.", value=pool.overflow
    )
    if pool.max_overflow is not None:
        yield GaugeMetricFamily(
            f"{PREFIX}_pool_max_overflow",
            "How many connections may open beyond the size.",
            value=pool.max_overflow,
        )


def app_registry(store: TaskStore) -> CollectorRegistry:
    """A registry of the app's own: the store's figures and this process's."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def add_metrics_route(app: FastAPI, store: TaskStore, token: bool) -> None:
    """``GET /metrics`` on ``app`` (inside its dependencies: the token when there is one).

    It runs on the event loop: the figures are in memory, and a thread pool
    full of calls waiting for a hung database must not hold the scrape.
    """
    registry = app_registry(store)
    router = APIRouter()

    @router.get(
        METRICS_PATH,
        response_class=Response,
        responses={
            **{code: body for code, body in responses(token=token).items() if code != 503},
            200: {
                "content": {CONTENT_TYPE_LATEST: {}, OPENMETRICS_CONTENT_TYPE: {}},
                "description": "Prometheus's text format, or OpenMetrics when asked for",
            },
        },
    )
    async def metrics(request: Request) -> Response:
        """The store's calls, latencies, errors, retries, busy waits and pool, for Prometheus
        (in the OpenMetrics format when the scraper asks for it)."""
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=media_type)

    app.include_router(router)
    app.state.metrics_registry = registry
