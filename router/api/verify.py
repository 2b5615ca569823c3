"""``POST /v1/sessions/{id}/verify``: speculative verification of an edge draft in one round trip."""

from __future__ import annotations

from fastapi import APIRouter

from client_edge.protocol import Paths, VerifyRequest, VerifyResponse
from router.api.errors_doc import errors
from router.deps import ServiceDep, TenantDep

router = APIRouter(tags=["generation"])


@router.post(Paths.VERIFY, response_model=VerifyResponse, responses=errors(400, 404, 409, 413, 422, 502, 503))
async def verify(session_id: str, body: VerifyRequest, service: ServiceDep, tenant: TenantDep) -> VerifyResponse:
    return await service.verify(session_id, body, tenant)
