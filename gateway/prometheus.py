"""Prometheus text: the domain metrics and the gateway's own requests.

Domain metrics are the shared snapshot every worker writes to Redis (the same JSON the client
and CLI show), so any gateway replica reports the whole service. Request counts and latencies
are this process's own, as Prometheus expects of a scraped target.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
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


def exposition(snapshot: dict[str, Any], depths: dict[str, int], requests: RequestMetrics) -> bytes:
    """The whole ``/metrics`` body."""
    domain = generate_latest(_Families(domain_families(snapshot, depths)))
    return domain + generate_latest(requests.registry)


def domain_families(snapshot: dict[str, Any], depths: dict[str, int]) -> list[Metric]:
    """Prometheus families from the metrics snapshot and the queue depths."""
    families: list[Metric] = []
    for name, values in snapshot.items():
        if not isinstance(values, dict) or "total" not in values:
            continue
        families.append(
            CounterMetricFamily(f"{NAMESPACE}_{name}", f"{name} (all workers).", values["total"])
        )
        labelled = {k: v for k, v in values.items() if k != "total"}
        if labelled:
            label = LABEL_NAMES.get(name, "kind")
            family = CounterMetricFamily(
                f"{NAMESPACE}_{name}_by_{label}", f"{name} by {label}.", labels=[label]
            )
            for value, count in sorted(labelled.items()):
                family.add_metric([value], count)
            families.append(family)
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
