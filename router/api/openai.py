"""OpenAI-compatible surface: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (streaming too).

Bodies are vLLM's OpenAI request schema, forwarded to the tenant's pinned replica by
:class:`router.proxy.OpenAIProxy`; replies (and errors) are vLLM's own. Authentication, rate limits and
the body size limit apply as on every route; the router's own errors here carry OpenAI's ``error``
object too (``router.openai_errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from router.deps import TenantDep
from router.openai_errors import CHAT_COMPLETIONS_PATH, COMPLETIONS_PATH, MODELS_PATH
from router.proxy import OpenAIProxy

router = APIRouter(tags=["openai"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "description": "vLLM's OpenAI request body"}}},
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    413: {"description": "body over the size limit"},
    422: {"description": "body is not a JSON object, or sets cache_salt"},
    429: {"description": "rate limit of the API key exceeded"},
    503: {"description": "the pinned vLLM replica cannot be reached"},
}


def _proxy(request: Request) -> OpenAIProxy:
    return request.app.state.openai_proxy


@router.get(MODELS_PATH, responses=_ERRORS)
async def list_models(request: Request, tenant: TenantDep) -> Response:
    """The served model (vLLM's ``/v1/models``)."""
    return await _proxy(request).get(MODELS_PATH, tenant)


@router.post(COMPLETIONS_PATH, openapi_extra=_BODY_DOC, responses=_ERRORS)
async def completions(request: Request, tenant: TenantDep) -> Response:
    """Text completion; ``stream: true`` relays vLLM's server-sent events as they come."""
    return await _proxy(request).post(COMPLETIONS_PATH, await request.body(), tenant)


@router.post(CHAT_COMPLETIONS_PATH, openapi_extra=_BODY_DOC, responses=_ERRORS)
async def chat_completions(request: Request, tenant: TenantDep) -> Response:
    """Chat completion; ``stream: true`` relays vLLM's server-sent events as they come."""
    return await _proxy(request).post(CHAT_COMPLETIONS_PATH, await request.body(), tenant)
