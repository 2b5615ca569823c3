"""``POST /v1/sessions/{id}/sync``: push new tokens without asking anything (optionally prefill them)."""

from __future__ import annotations

from fastapi import APIRouter

from client_edge.protocol import Paths, SessionResponse, SyncRequest
from router.api.errors_doc import errors
from router.deps import ServiceDep, TenantDep

router = APIRouter(tags=["generation"])


@router.post(Paths.SYNC, response_model=SessionResponse, responses=errors(400, 404, 409, 413, 422, 502, 503))
async def sync(session_id: str, body: SyncRequest, service: ServiceDep, tenant: TenantDep) -> SessionResponse:
    return await service.sync(session_id, body, tenant)
