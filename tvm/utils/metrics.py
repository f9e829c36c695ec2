"""Prometheus metrics of both services, defined once.

Both the gateway and the worker serve ``GET /metrics`` through :func:`instrument`,
which also counts every HTTP request and its latency by route template (never by
raw path, so tokens do not become labels). Every metric has a ``service`` label
(``gateway`` or ``worker``) so that both can share one process in tests.

Gateway: executions by language and outcome, their latency, queue depth, running
submissions, worker health and load, rate-limit refusals, callbacks.
Worker: executions by outcome and sandboxes running / pooled, read from the
engine at scrape time (``extra`` below).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "tvm_http_requests", "HTTP requests served", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "tvm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
EXECUTIONS = Counter(
    "tvm_executions", "Executions finished, by language and outcome", ["language", "outcome"]
)
EXECUTION_LATENCY = Histogram(
    "tvm_execution_duration_seconds",
    "Time from dispatch to result, by language",
    ["language"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("tvm_queue_depth", "Submissions waiting in the gateway's queue")
SUBMISSIONS_RUNNING = Gauge("tvm_submissions_running", "Submissions being run by this gateway")
WORKER_UP = Gauge("tvm_worker_up", "1 if the worker passed its last health check", ["worker"])
WORKER_ADMITTED = Gauge("tvm_worker_admitted", "Executions admitted on the worker", ["worker"])
WORKER_SANDBOXES = Gauge("tvm_worker_sandboxes", "Sandboxes on the worker", ["worker"])
REFUSED = Counter("tvm_refused_requests", "Requests refused for capacity", ["reason"])
CALLBACKS = Counter("tvm_callbacks", "callback_url deliveries", ["outcome"])

ExtraMetrics = Callable[[Request], Iterable[Metric]]


class _Extra(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


class _CountRequests:
    """Request count and latency by route template (pure ASGI middleware)."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            if template != "/metrics":
                method = scope["method"]
                HTTP_REQUESTS.labels(self.service, template, method, str(status)).inc()
                HTTP_LATENCY.labels(self.service, template, method).observe(
                    time.perf_counter() - started
                )


def instrument(app: FastAPI, service: str, extra: ExtraMetrics | None = None) -> None:
    """Add request metrics and ``GET /metrics`` (Prometheus text format) to ``app``."""

    app.add_middleware(_CountRequests, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body = generate_latest(REGISTRY)
        if extra is not None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Extra(extra(request)))
            body += generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def worker_metrics(engine: Any) -> list[Metric]:
    """The worker's engine, read at scrape time: outcomes, admitted, sandboxes."""
    outcomes = CounterMetricFamily(
        "tvm_worker_executions", "Executions finished on this worker", labels=["outcome"]
    )
    for outcome, count in sorted(engine.outcomes.items()):
        outcomes.add_metric([outcome], count)
    admitted = GaugeMetricFamily("tvm_worker_admitted_now", "Executions admitted right now")
    admitted.add_metric([], engine.admitted)
    stats = engine.sandboxes.stats()
    sandboxes = GaugeMetricFamily("tvm_sandboxes", "Sandboxes by state", labels=["state"])
    sandboxes.add_metric(["running"], stats.get("active", 0))
    sandboxes.add_metric(["pooled"], sum(stats.get("warm", {}).values()))
    sandboxes.add_metric(["total"], stats.get("sandboxes", 0))
    reaped = CounterMetricFamily("tvm_sandboxes_reaped", "Sandboxes killed by the reaper")
    reaped.add_metric([], stats.get("reaped", 0))
    return [outcomes, admitted, sandboxes, reaped]
