"""Prometheus metrics of the web layer: requests by endpoint and status, latency
histograms per endpoint, events stored by type.

With several worker processes (``recloop serve --workers N``) prometheus-client's
multiprocess mode is used: ``PROMETHEUS_MULTIPROC_DIR`` (set by ``recloop serve``)
holds each process' values and ``GET /metrics`` sums them.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    """The metrics of one app, in their own registry (several apps can live in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("recloop_http_requests_total", "HTTP requests answered",
                                ("method", "endpoint", "status"), registry=self.registry)
        self.latency = Histogram("recloop_http_request_duration_seconds", "Time to answer, by endpoint",
                                 ("method", "endpoint"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("recloop_events_stored_total", "Events durably stored, by type", ("type",),
                              registry=self.registry)
        self.reloads = Counter("recloop_model_reloads_total", "Model reloads done by this process",
                               registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task, unlike ``BaseHTTPMiddleware``): times
    every HTTP request and labels it with its route template (``/items/{item_id}/similar``),
    so ids never become label values."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.latency.labels(method, endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, endpoint, str(status["code"])).inc()
