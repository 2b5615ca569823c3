"""Prometheus metrics of the router, on a per-app registry (``GET /metrics``).

| metric | type | labels |
|---|---|---|
| ``xedge_router_requests_total`` | counter | route (template), method, status |
| ``xedge_router_errors_total`` | counter | code (``detail.code`` of the router, ``upstream_<type>`` of vLLM, else ``http_<status>``) |
| ``xedge_router_escalations_total`` | counter | kind (escalate, verify), outcome (ok, error) |
| ``xedge_router_escalation_seconds`` | histogram | kind |
| ``xedge_router_cloud_prompt_tokens_total`` | counter | api (edge, openai), kind (computed, cached, unreported) |
| ``xedge_router_cloud_completion_tokens_total`` | counter | api |
| ``xedge_router_sessions_live`` | gauge | - |

Edge traffic is measured by :class:`MetricsMiddleware` from the responses themselves (status, error code,
``usage``), so the edge service needs no metrics code; the OpenAI proxy records its usage directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from client_edge.protocol import Paths

ESCALATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Edge routes whose JSON reply carries the cloud's ``usage``; escalate / verify are the escalations.
_USAGE_ROUTES = {Paths.SESSIONS, Paths.ESCALATE, Paths.VERIFY, Paths.SYNC}
_ESCALATION_KIND = {Paths.ESCALATE: "escalate", Paths.VERIFY: "verify"}
_MAX_PARSED_BODY = 256 * 1024


class RouterMetrics:
    """The router's metric objects, registered on ``registry`` (a fresh one per app by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "xedge_router_requests", "HTTP requests by route template, method and status", ["route", "method", "status"], registry=r
        )
        self.errors = Counter("xedge_router_errors", "Error responses by error code", ["code"], registry=r)
        self.escalations = Counter(
            "xedge_router_escalations", "Edge escalations (escalate / verify calls) by outcome", ["kind", "outcome"], registry=r
        )
        self.escalation_seconds = Histogram(
            "xedge_router_escalation_seconds", "Router-side latency of an escalation", ["kind"],
            buckets=ESCALATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.cloud_prompt_tokens = Counter(
            "xedge_router_cloud_prompt_tokens",
            "Prompt tokens vLLM computed vs served from its prefix cache",
            ["api", "kind"],
            registry=r,
        )
        self.cloud_completion_tokens = Counter(
            "xedge_router_cloud_completion_tokens", "Tokens vLLM generated", ["api"], registry=r
        )

    def record_usage(self, api: str, usage: Mapping[str, Any]) -> None:
        """Count one reply's usage: edge ``Usage`` (computed/cached) or OpenAI ``usage`` (prompt_tokens_details)."""
        prompt = int(usage.get("prompt_tokens") or 0)
        if "computed_tokens" in usage:
            cached: int | None = int(usage.get("cached_tokens") or 0)
        else:
            details = usage.get("prompt_tokens_details")
            cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else None
        if cached is None:  # vLLM without --enable-prompt-tokens-details: the split is unknown
            self.cloud_prompt_tokens.labels(api, "unreported").inc(prompt)
        else:
            self.cloud_prompt_tokens.labels(api, "cached").inc(cached)
            self.cloud_prompt_tokens.labels(api, "computed").inc(prompt - cached)
        self.cloud_completion_tokens.labels(api).inc(int(usage.get("completion_tokens") or 0))


class GaugeCollector(Collector):
    """A gauge whose value is read from ``read()`` at scrape time (e.g. the live session count)."""

    def __init__(self, name: str, doc: str, read: Callable[[], float | None]) -> None:
        self.name, self.doc, self.read = name, doc, read

    def collect(self) -> Iterator[Metric]:
        value = self.read()
        if value is not None:
            yield GaugeMetricFamily(self.name, self.doc, value=value)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def error_code(status: int, body: bytes) -> str:
    """The error label of a response: the router's ``detail.code``, vLLM's ``upstream_<type>``, else the status."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            return detail["code"]
        err = data.get("error") if isinstance(data.get("error"), dict) else data
        if isinstance(err.get("type"), str):
            return f"upstream_{err['type']}"
    return f"http_{status}"


def _keep(scope: Scope, status: int) -> bool:
    """Only error bodies (for the code) and edge replies (for usage) are read; streams pass untouched."""
    return status >= 400 or getattr(scope.get("route"), "path", None) in _USAGE_ROUTES


class MetricsMiddleware:
    """Counts every HTTP request by route template and status; for error replies the error code; for the
    edge routes, escalation latency and the ``usage`` in the JSON reply. Passes every message on unchanged."""

    def __init__(self, app: ASGIApp, metrics: RouterMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _MAX_PARSED_BODY and _keep(scope, status):
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._record(scope, status or 500, bytes(body), time.perf_counter() - t0)

    def _record(self, scope: Scope, status: int, body: bytes, elapsed: float) -> None:
        route_obj = scope.get("route")
        route = getattr(route_obj, "path", None) or "unmatched"
        m = self.metrics
        # Label values come from a fixed set only: a client's made-up method must not add a series.
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        m.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            m.errors.labels(error_code(status, body)).inc()
        if scope["method"] != "POST":
            return
        kind = _ESCALATION_KIND.get(route)
        if kind is not None:
            m.escalations.labels(kind, "ok" if status < 400 else "error").inc()
            m.escalation_seconds.labels(kind).observe(elapsed)
        if route in _USAGE_ROUTES and status < 400:
            try:
                usage = json.loads(body).get("usage")
            except (ValueError, AttributeError):
                usage = None
            if isinstance(usage, dict):
                m.record_usage("edge", usage)
