"""Per-tenant API keys (``Authorization: Bearer <key>``) and per-key rate limits, as one FastAPI dependency.

Keys are configured as ``tenant:key`` pairs (``XEDGE_ROUTER_API_KEYS="acme:sk-...,globex:sk-..."``; a
tenant may hold several keys). With keys configured, :func:`keyed_tenant` replaces
``router.deps.get_tenant`` for every route, so a key decides the tenant of edge sessions and OpenAI calls
alike (the ``X-Xedge-Tenant`` header is then ignored). Keys are kept only as SHA-256 digests and looked up
by digest, so lookups do not leak key prefixes through timing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated

from fastapi import Header, Request

from router.errors import RouterError
from router.ratelimit import TokenBucketLimiter

MIN_KEY_CHARS = 16


def valid_tenant(tenant: str) -> bool:
    """1-64 characters of [A-Za-z0-9._-] (ASCII only: ``str.isalnum`` alone also takes "²" or "é")."""
    return 0 < len(tenant) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in tenant)


def parse_api_keys(spec: str) -> dict[str, str]:
    """``"tenant:key,tenant:key"`` -> ``{key: tenant}``; raises ValueError naming the bad entry."""
    keys: dict[str, str] = {}
    for n, entry in enumerate(e.strip() for e in spec.split(",")):
        if not entry:
            continue
        tenant, sep, key = entry.partition(":")
        if not sep:
            raise ValueError(f"api_keys entry {n} has no ':'; expected 'tenant:key'")
        keys[key] = tenant
    check_api_keys(keys)
    return keys


def check_api_keys(keys: Mapping[str, str]) -> None:
    """Every tenant is 1-64 chars of [A-Za-z0-9._-]; every key has >= 16 non-blank characters.

    Errors name the entry by position only: a malformed list (say, tenant and key swapped) must not put
    key material into a log line."""
    for n, (key, tenant) in enumerate(keys.items()):
        if not valid_tenant(tenant):
            raise ValueError(f"api_keys entry {n}: the tenant must be 1-64 characters of [A-Za-z0-9._-]")
        if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
            raise ValueError(f"api_keys entry {n}: the key must have at least {MIN_KEY_CHARS} characters and no blanks")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyAuth:
    """Resolves a bearer key to its tenant and charges the key's rate-limit bucket (if ``limiter``)."""

    def __init__(self, keys: Mapping[str, str], limiter: TokenBucketLimiter | None) -> None:
        if not keys:
            raise ValueError("KeyAuth needs at least one API key")
        check_api_keys(keys)
        self._tenants = {_digest(k): t for k, t in keys.items()}
        self.limiter = limiter

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant of a valid ``Bearer`` header, else None (nothing charged)."""
        if authorization is None:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self._tenants.get(_digest(key.strip()))

    def authenticate(self, authorization: str | None) -> str:
        if authorization is None:
            raise RouterError("unauthorized", "missing 'Authorization: Bearer <api key>' header")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise RouterError("unauthorized", "the Authorization header must be 'Bearer <api key>'")
        digest = _digest(key.strip())
        tenant = self._tenants.get(digest)
        if tenant is None:
            raise RouterError("unauthorized", "invalid API key")
        if self.limiter is not None:
            wait = self.limiter.acquire(digest)
            if wait > 0:
                raise RouterError(
                    "rate_limited",
                    f"rate limit of this API key ({self.limiter.rate:g} requests/s, burst {self.limiter.burst}) "
                    f"exceeded; retry in {wait:.2f} s",
                    retry_after_s=wait,
                )
        return tenant


async def keyed_tenant(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Drop-in replacement of ``router.deps.get_tenant`` when API keys are configured."""
    auth: KeyAuth = request.app.state.key_auth
    return auth.authenticate(authorization)
