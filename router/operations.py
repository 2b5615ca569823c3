"""The deployment surface as one :class:`router.app.RouterExtension`: OpenAI proxy, API keys and rate
limits, ``/ready`` and ``/metrics`` (with the prefix-cache policy's counters when a status dir is set).

``python -m router`` installs it (:func:`default_extensions`); tests that build the app themselves pass
``extensions=[OperationsExtension(settings)]``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from router.api import openai, ops
from router.app import RouterExtension
from router.auth import KeyAuth, keyed_tenant
from router.deps import get_tenant
from router.gate import AuthGateMiddleware
from router.metrics import GaugeCollector, MetricsMiddleware, RouterMetrics
from router.openapi_doc import install_openapi
from router.prefix_cache_metrics import PrefixCacheCollector
from router.proxy import OpenAIProxy
from router.ratelimit import TokenBucketLimiter
from router.settings import RouterSettings

log = logging.getLogger("router")


class OperationsExtension(RouterExtension):
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.metrics = RouterMetrics()

    def install(self, app: FastAPI) -> None:
        s = self.settings
        app.state.metrics = self.metrics
        app.include_router(openai.router)
        app.include_router(ops.router)
        if s.api_keys:
            limiter = TokenBucketLimiter(s.rate_limit_rps, s.rate_limit_burst) if s.rate_limit_rps > 0 else None
            app.state.key_auth = KeyAuth(s.api_keys, limiter)
            app.dependency_overrides[get_tenant] = keyed_tenant
            failures = TokenBucketLimiter(s.auth_failure_rps, s.auth_failure_burst, max_keys=100_000)
            # Outside the body limit (added at build time), so a request without a valid key never has its
            # body read; inside the metrics, which count its 401.
            app.add_middleware(
                AuthGateMiddleware, auth=app.state.key_auth, open_paths=frozenset(s.open_paths), failures=failures
            )
        app.add_middleware(MetricsMiddleware, metrics=self.metrics)
        install_openapi(app, s)
        registry = self.metrics.registry

        def live_sessions() -> float | None:
            service = getattr(app.state, "service", None)
            return None if service is None else float(len(service.store))

        registry.register(GaugeCollector("xedge_router_sessions_live", "Edge sessions the router holds", live_sessions))
        if s.status_dir is not None:
            registry.register(PrefixCacheCollector(s.status_dir))

    async def startup(self, app: FastAPI) -> None:
        s = self.settings
        app.state.openai_proxy = OpenAIProxy(s, self.metrics)
        if not s.api_keys:
            log.warning(
                "no API keys configured (XEDGE_ROUTER_API_KEYS): every caller is trusted and the tenant comes "
                "from the X-Xedge-Tenant header; set keys for any non-loopback deployment"
            )
        elif s.rate_limit_rps <= 0:
            log.warning("API keys set but no rate limit (XEDGE_ROUTER_RATE_LIMIT_RPS=0): keys are not throttled")
        if s.status_dir is None:
            log.info("no status dir (XEDGE_ROUTER_STATUS_DIR): /metrics has no prefix-cache policy counters")

    async def shutdown(self, app: FastAPI) -> None:
        await app.state.openai_proxy.aclose()


def default_extensions(settings: RouterSettings) -> list[RouterExtension]:
    """What ``python -m router`` serves besides the edge protocol."""
    return [OperationsExtension(settings)]
