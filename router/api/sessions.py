"""Session resource: create, get, delete, truncate."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from client_edge.protocol import CreateSessionRequest, Paths, SessionResponse, TruncateRequest
from router.api.errors_doc import errors
from router.deps import ServiceDep, TenantDep

router = APIRouter(tags=["sessions"])


@router.post(
    Paths.SESSIONS,
    response_model=SessionResponse,
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 409, 413, 422, 502, 503),
)
async def create_session(body: CreateSessionRequest, service: ServiceDep, tenant: TenantDep) -> SessionResponse:
    """Open a session on a prompt; ``prefill`` computes its KV now so the first escalation is cheap."""
    return await service.create(body, tenant)


@router.get(Paths.SESSION, response_model=SessionResponse, responses=errors(404))
async def get_session(
    session_id: str, service: ServiceDep, tenant: TenantDep, include_content: bool = False
) -> SessionResponse:
    """The session's state; ``include_content`` adds the committed token ids (or text)."""
    return await service.get(session_id, tenant, include_content=include_content)


@router.delete(Paths.SESSION, status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_session(session_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    await service.delete(session_id, tenant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(Paths.TRUNCATE, response_model=SessionResponse, responses=errors(400, 404, 409, 413, 422))
async def truncate_session(
    session_id: str, body: TruncateRequest, service: ServiceDep, tenant: TenantDep
) -> SessionResponse:
    """Keep the first ``length`` committed units (e.g. to the last checkpoint both sides share)."""
    return await service.truncate(session_id, body, tenant)
