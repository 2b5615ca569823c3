"""Authentication before anything else (issue 16, findings 5 and 7), as ASGI middleware.

With API keys configured, :class:`AuthGateMiddleware` answers a request without a valid key with 401
(``WWW-Authenticate: Bearer``) before its body is read, so an unauthenticated client cannot hold
stalled uploads in the router's memory. Exempt: ``open_paths`` (default ``/health`` and ``/v1/info``),
and the operator paths (``/ready``, ``/metrics``, ``/docs``, ``/redoc``, ``/openapi.json``) for
clients on loopback (a container healthcheck, a local scraper); from anywhere else they need a key.

Failed attempts are throttled per client address (a token bucket, ``auth_failure_burst`` failures,
refilled at ``auth_failure_rps``): once a client has used them up, every request from it is answered
429 with ``Retry-After`` until the bucket refills, valid key or not, so keys cannot be brute-forced.
Tenant resolution and the per-key rate limit stay in :func:`router.auth.keyed_tenant`.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from client_edge.protocol import ErrorInfo
from router.auth import KeyAuth
from router.errors import error_response
from router.ratelimit import TokenBucketLimiter

OPS_PATHS = frozenset({"/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AuthGateMiddleware:
    def __init__(
        self, app: ASGIApp, auth: KeyAuth, open_paths: frozenset[str], failures: TokenBucketLimiter
    ) -> None:
        self.app = app
        self.auth = auth
        self.open_paths = open_paths
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        host = (scope.get("client") or (None, None))[0]
        if path in self.open_paths or (path in OPS_PATHS and _loopback(host)):
            await self.app(scope, receive, send)
            return
        who = host or "unknown"
        wait = self.failures.wait(who)
        if wait > 0:
            info = ErrorInfo(code="rate_limited", message="too many failed authentications from this address")
            await error_response(429, info, retry_after_s=wait, path=path)(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        if self.auth.tenant_of(raw.decode("latin-1") if raw is not None else None) is None:
            self.failures.acquire(who)
            if raw is None:
                message = "missing 'Authorization: Bearer <api key>' header"
            elif not raw.lower().startswith(b"bearer "):
                message = "the Authorization header must be 'Bearer <api key>'"
            else:
                message = "invalid API key"
            info = ErrorInfo(code="unauthorized", message=message)
            await error_response(401, info, path=path)(scope, receive, send)
            return
        await self.app(scope, receive, send)
