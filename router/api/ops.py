"""Operations: ``GET /ready`` (every vLLM replica answers ``/health``, and the session store answers) and
``GET /metrics`` (Prometheus).

``/health`` (liveness of the router process) lives in ``router.api.info``.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.proxy import OpenAIProxy

router = APIRouter(tags=["operations"])
_READY_TIMEOUT_S = 2.0


async def _replica_ok(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health", timeout=_READY_TIMEOUT_S)).status_code == 200
    except httpx.HTTPError:
        return False


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """200 when every replica is healthy and the session store answers, else 503 naming (by index: internal
    URLs stay in the router's settings and logs) the replicas that are not, or the store."""
    proxy: OpenAIProxy = request.app.state.openai_proxy
    oks, store_ok = await asyncio.gather(
        asyncio.gather(*(_replica_ok(c) for c in proxy.clients)), request.app.state.service.store.ping()
    )
    replicas = [{"replica": i, "healthy": ok} for i, ok in enumerate(oks)]
    body = {"replicas": replicas, "store": "ok" if store_ok else "unreachable"}
    if all(oks) and store_ok:
        return JSONResponse({"status": "ready", **body})
    if not all(oks):
        down = ", ".join(f"replica {r['replica']}" for r in replicas if not r["healthy"])
        detail = {"code": "engine_unavailable", "message": f"vLLM replica(s) not healthy: {down}"}
    else:
        detail = {"code": "store_unavailable", "message": "the session store is unreachable"}
    return JSONResponse({"detail": detail, **body}, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: router counters, escalation latency, cloud tokens, sessions, prefix cache."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
