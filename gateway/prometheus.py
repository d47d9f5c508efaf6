"""Prometheus text: the gateway's own requests, and apart from them the shared figures.

Two bodies, so that scaling the gateway never double counts. ``/metrics`` holds this process's
request counts and latencies: scrape every replica and sum. ``/metrics/shared`` holds the
Redis-wide figures every worker writes (the same JSON the client and CLI show) and the queue
depths: every replica answers the same numbers, so scrape one replica (or the service address
once); summing them over replicas would count each turn once per replica.

Each metric is one family; a counter kept per strategy, provider or error code carries that as
a label (``tokenwindow_compressions_total{strategy="hybrid"}``), and what was counted without
a label shows as ``{strategy="other"}``, so the sum over the label is the total.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "tokenwindow"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus version scrapes."""
LABEL_NAMES = {"compressions": "strategy", "provider_calls": "provider", "errors": "code"}
"""What the label of a ``name:label`` counter field means; others are called ``kind``."""


class RequestMetrics:
    """Counts and times every request by route template, method and status."""

    def __init__(self) -> None:
        # The classic text format would show each counter's start time as a second family
        # (``X_created``); Prometheus does not need it to compute rates.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the response (streams included).",
            ["route", "method"],
            namespace=NAMESPACE,
            registry=self.registry,
        )


class MeasureRequests:
    """ASGI middleware feeding ``RequestMetrics``; a stream is timed until it ends."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router records the matched route in the scope: label by template, not path.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


class _Families:
    """A one-off collector over already built families, for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


UNLABELLED = "other"
"""Label value of the increments a labelled counter received without a label."""


def process_exposition(requests: RequestMetrics) -> bytes:
    """The ``/metrics`` body: this process's requests only."""
    return generate_latest(requests.registry)


def shared_exposition(snapshot: dict[str, Any], depths: dict[str, int]) -> bytes:
    """The ``/metrics/shared`` body: the Redis-wide figures and the queue depths."""
    return generate_latest(_Families(domain_families(snapshot, depths)))


def _counter(name: str, values: dict[str, int]) -> CounterMetricFamily:
    """One family: a single sample, or one per label value summing to the total."""
    labelled = {k: v for k, v in values.items() if k != "total"}
    if not labelled:
        return CounterMetricFamily(f"{NAMESPACE}_{name}", f"{name} (all workers).", values["total"])
    label = LABEL_NAMES.get(name, "kind")
    family = CounterMetricFamily(
        f"{NAMESPACE}_{name}", f"{name} (all workers), by {label}.", labels=[label]
    )
    for value, count in sorted(labelled.items()):
        family.add_metric([value], count)
    rest = values["total"] - sum(labelled.values())
    if rest > 0:
        family.add_metric([UNLABELLED], rest)
    return family


def domain_families(snapshot: dict[str, Any], depths: dict[str, int]) -> list[Metric]:
    """Prometheus families from the metrics snapshot and the queue depths."""
    families: list[Metric] = [
        _counter(name, values)
        for name, values in snapshot.items()
        if isinstance(values, dict) and "total" in values
    ]
    families.append(
        GaugeMetricFamily(
            f"{NAMESPACE}_active_sessions",
            "Sessions with a turn in the last 15 minutes.",
            snapshot["active_sessions"],
        )
    )
    latency = snapshot["first_token_latency_seconds"]
    families.append(
        HistogramMetricFamily(
            f"{NAMESPACE}_first_token_latency_seconds",
            "Time from a turn's submission to its first streamed token.",
            buckets=list(latency["buckets"].items()),
            sum_value=latency["sum"],
        )
    )
    queues = GaugeMetricFamily(
        f"{NAMESPACE}_queue_depth", "Tasks waiting on a broker queue.", labels=["queue"]
    )
    for queue, depth in sorted(depths.items()):
        queues.add_metric([queue], depth)
    families.append(queues)
    return families
