"""Forwarding of OpenAI-compatible calls to the pinned vLLM replica (plain JSON and SSE streams).

Per request: the JSON body must be an object; the tenant's ``cache_salt`` is set (a client-chosen salt
is refused, since it could target another tenant's cache); ``vllm_xargs`` keys that only the router may
write (``xedge_*``, read inside vLLM by the verify logits processor and the eviction policy:
:func:`client_edge.protocol.engine_xargs.is_router_owned`) are refused, since they would let a client
force output tokens or forge another tenant's metadata; the replica is picked by consistent hashing of
``tenant`` and the body's ``user`` field, so one conversation keeps one replica's prefix cache. vLLM's
reply (status, body, SSE events) goes back unchanged; vLLM's ``usage`` is counted in the metrics
(for streams only when the client asked for it with ``stream_options.include_usage``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import Response
from fastapi.responses import StreamingResponse

from client_edge.protocol.engine_xargs import is_router_owned
from router.errors import RouterError
from router.metrics import RouterMetrics
from router.openai_errors import openai_error
from router.replicas import HashRing
from router.settings import RouterSettings
from router.tenancy import tenant_cache_salt

log = logging.getLogger("router.proxy")
_JSON = {"content-type": "application/json"}


class SSEUsageScanner:
    """Watches an SSE byte stream and keeps the last ``usage`` object seen in a ``data:`` event."""

    def __init__(self) -> None:
        self._buf = b""
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                    self.usage = event["usage"]


class OpenAIProxy:
    """Owns one HTTP client per replica (same order as ``settings.vllm_urls``) and forwards calls."""

    def __init__(self, settings: RouterSettings, metrics: RouterMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ring = HashRing(settings.vllm_urls)
        timeout = httpx.Timeout(settings.engine_timeout_s, connect=5.0)
        headers = {"Authorization": f"Bearer {settings.vllm_api_key}"} if settings.vllm_api_key else None
        self.clients = [
            httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, headers=headers) for url in settings.vllm_urls
        ]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    def pick(self, tenant: str, user: object = None) -> httpx.AsyncClient:
        return self.clients[self.ring.pick(f"{tenant}\x00{user or ''}")]

    async def get(self, path: str, tenant: str) -> Response:
        client = self.pick(tenant)
        try:
            upstream = await client.get(path)
        except httpx.HTTPError as exc:
            raise self._unavailable(client, path, exc) from exc
        return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    def prepare(self, raw: bytes, tenant: str) -> dict[str, Any]:
        """Parse and check the client's body, and set the tenant's cache salt."""
        try:
            body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        except ValueError as exc:
            raise RouterError("invalid_request", f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise RouterError("invalid_request", "the request body nests JSON too deeply") from None
        if not isinstance(body, dict):
            raise RouterError("invalid_request", f"the request body must be a JSON object, got {type(body).__name__}")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise RouterError("invalid_request", f"stream must be true or false, got {body['stream']!r}", param="stream")
        if self.settings.tenant_cache_salt:
            if "cache_salt" in body:
                raise RouterError(
                    "invalid_request",
                    "cache_salt is set by the router for each tenant; remove it from the request",
                    param="cache_salt",
                )
            body["cache_salt"] = tenant_cache_salt(self.settings.cache_salt_secret, tenant)
        xargs = body.get("vllm_xargs")
        if isinstance(xargs, dict):
            owned = sorted(k for k in xargs if is_router_owned(str(k)))
            if owned:
                raise RouterError(
                    "invalid_request",
                    f"vllm_xargs keys {owned[:5]} are reserved for the router (every 'xedge_*' key); remove them",
                    param="vllm_xargs",
                )
        elif xargs is not None:
            raise RouterError(
                "invalid_request", f"vllm_xargs must be an object, got {type(xargs).__name__}", param="vllm_xargs"
            )
        return body

    async def post(self, path: str, raw: bytes, tenant: str) -> Response:
        body = self.prepare(raw, tenant)
        client = self.pick(tenant, body.get("user"))
        try:
            content = json.dumps(body).encode()  # ASCII: a lone surrogate travels as an escape, as it came
        except (RecursionError, ValueError) as exc:
            raise RouterError("invalid_request", f"the request body cannot be forwarded: {exc}") from None
        if body.get("stream") is True:
            return await self._stream(client, path, content)
        try:
            upstream = await client.post(path, content=content, headers=_JSON)
        except httpx.HTTPError as exc:
            raise self._unavailable(client, path, exc) from exc
        if upstream.status_code == 200:
            usage = _json_field(upstream.content, "usage")
            if isinstance(usage, dict):
                self.metrics.record_usage("openai", usage)
        return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    async def _stream(self, client: httpx.AsyncClient, path: str, content: bytes) -> Response:
        request = client.build_request("POST", path, content=content, headers=_JSON)
        try:
            upstream = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unavailable(client, path, exc) from exc
        if upstream.status_code != 200:
            try:
                data = await upstream.aread()
            finally:
                await upstream.aclose()
            return Response(data, upstream.status_code, media_type=upstream.headers.get("content-type"))

        async def relay() -> AsyncIterator[bytes]:
            scanner = SSEUsageScanner()
            try:
                async for chunk in upstream.aiter_bytes():
                    scanner.feed(chunk)
                    yield chunk
            except httpx.HTTPError as exc:
                # Headers are sent: report the break in-band, as OpenAI streams do (the client raises).
                log.warning("stream from %s broke: %r", client.base_url, exc)
                self.metrics.errors.labels("engine_stream_broken").inc()
                error = openai_error(503, "the vLLM replica's stream broke", "engine_unavailable")
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
            finally:
                await upstream.aclose()
                if scanner.usage is not None:
                    self.metrics.record_usage("openai", scanner.usage)

        return StreamingResponse(
            relay(), status_code=200, media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers={"cache-control": "no-cache"},
        )  # fmt: skip

    def _unavailable(self, client: httpx.AsyncClient, path: str, exc: Exception) -> RouterError:
        replica = self.clients.index(client)
        log.warning("replica %d (%s) unreachable on %s: %r", replica, client.base_url, path, exc)  # the URL stays in the log
        return RouterError(
            "engine_unavailable", f"vLLM replica {replica} unreachable on {path} ({type(exc).__name__})", retry_after_s=1.0
        )


def _not_json(name: str) -> float:
    """Python's json takes NaN and Infinity; JSON (and OpenAI) does not, so neither is forwarded."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf, which would be forwarded as Infinity
        raise ValueError(f"the number {text[:32]} is out of range")
    return value


def _json_field(content: bytes, name: str) -> object:
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None
