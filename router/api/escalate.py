"""``POST /v1/sessions/{id}/escalate``: commit the edge's new tokens, return the cloud's next k tokens."""

from __future__ import annotations

from fastapi import APIRouter

from client_edge.protocol import EscalateRequest, EscalateResponse, Paths
from router.api.errors_doc import errors
from router.deps import ServiceDep, TenantDep

router = APIRouter(tags=["generation"])


@router.post(Paths.ESCALATE, response_model=EscalateResponse, responses=errors(400, 404, 409, 413, 422, 502, 503))
async def escalate(session_id: str, body: EscalateRequest, service: ServiceDep, tenant: TenantDep) -> EscalateResponse:
    return await service.escalate(session_id, body, tenant)
