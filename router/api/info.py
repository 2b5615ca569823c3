"""``GET /v1/info`` (what the cloud serves and its limits) and ``GET /health``."""

from __future__ import annotations

from fastapi import APIRouter

from client_edge.protocol import CloudInfo, Paths
from router.deps import ServiceDep

router = APIRouter(tags=["info"])


@router.get(Paths.INFO, response_model=CloudInfo)
async def info(service: ServiceDep) -> CloudInfo:
    return service.info()


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
