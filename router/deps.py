"""Typed FastAPI dependencies: the service the lifespan built, and the caller's tenant.

The tenant comes from the ``X-Xedge-Tenant`` header (default ``default``). A deployment with API keys
replaces it: ``app.dependency_overrides[get_tenant] = resolve_tenant_from_key``. Routes take
:data:`TenantDep`, which also holds one of the tenant's request slots for the request's duration
(``router.quota``: ``tenant_max_concurrent``) and forgets a deleted session's share of its caps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request

from client_edge.protocol import TENANT_HEADER
from router.auth import valid_tenant
from router.errors import RouterError
from router.service import EdgeService


# Dependencies are ``async def`` although they do not await: FastAPI runs a plain ``def`` dependency in a
# worker thread, a thread hop per request for a dictionary lookup.
async def get_service(request: Request) -> EdgeService:
    return request.app.state.service


async def get_tenant(tenant: Annotated[str | None, Header(alias=TENANT_HEADER)] = None) -> str:
    if tenant is None:
        return "default"
    if not valid_tenant(tenant):
        raise RouterError("invalid_request", f"{TENANT_HEADER} must be 1-64 characters of [A-Za-z0-9._-]")
    return tenant


async def tenant_slot(request: Request, tenant: Annotated[str, Depends(get_tenant)]) -> AsyncIterator[str]:
    quota = request.app.state.service.quota
    with quota.request(tenant):
        yield tenant
    session_id = request.path_params.get("session_id")
    if request.method == "DELETE" and session_id:  # reached only when the delete succeeded
        quota.closed(tenant, session_id)


ServiceDep = Annotated[EdgeService, Depends(get_service)]
TenantDep = Annotated[str, Depends(tenant_slot)]
