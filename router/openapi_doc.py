"""The OpenAPI document as the router really behaves (issue 16, finding 7): every error status a route
can answer, with the body it really has (``ErrorResponse``, also for 422), ``Retry-After`` on 429 and
503, the bearer security scheme when API keys are configured, and the limits in force."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from client_edge.protocol import ErrorResponse
from router.gate import OPS_PATHS
from router.settings import RouterSettings

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ERRORS = {
    401: "missing or invalid API key",
    408: "the request body did not arrive in time",
    413: "body over the size limit",
    422: "body failed validation",
    429: "a rate limit or a per-tenant cap (sessions, bytes held, requests in flight) was reached; see Retry-After",
    503: "the vLLM replica cannot be reached; see Retry-After",
}
_PROXIED = frozenset({"/v1/models", "/v1/completions", "/v1/chat/completions"})
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _limits(s: RouterSettings) -> str:
    return (
        f"\n\nLimits: bodies up to {s.max_body_bytes} bytes, arriving within {s.body_timeout_s:g} s; k <= {s.max_k}, "
        f"top_n <= {s.max_top_n}, drafts <= {s.max_draft} tokens; per tenant: {s.tenant_max_sessions} sessions, "
        f"{s.tenant_max_bytes} bytes of session state, {s.tenant_max_concurrent} requests in flight; "
        f"{s.max_sessions} sessions in all."
        + (f" Each API key: {s.rate_limit_rps:g} requests/s, burst {s.rate_limit_burst}." if s.rate_limit_rps > 0 else "")
    )


def build_openapi(app: FastAPI, s: RouterSettings) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=(app.description or "") + _limits(s),
                       routes=app.routes)  # fmt: skip
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items():
        schemas.setdefault(name, schema)
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    error_schema.pop("$defs", None)
    schemas["ErrorResponse"] = error_schema
    keyed = bool(s.api_keys)
    if keyed:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in spec.get("paths", {}).items():
        open_path = path in s.open_paths or path == "/health"
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            statuses = [429]
            if method in ("post", "put", "patch"):
                statuses += [408, 413, 422]
            if keyed and path in OPS_PATHS:  # a key, or a loopback client without one
                statuses.append(401)
                op["security"] = [{"bearer": []}, {}]
            elif keyed and not open_path:
                statuses.append(401)
                op["security"] = [{"bearer": []}]
            elif keyed:
                op["security"] = []
            if "503" in responses or path == "/ready" or path.startswith("/v1/") and path != "/v1/info":
                statuses.append(503)
            for status in statuses:
                entry = responses.setdefault(str(status), {"description": _ERRORS[status]})
                entry["content"] = {"application/json": {"schema": _ERROR_REF}}
                if status in (429, 503):
                    entry["headers"] = _RETRY_AFTER
            if path in OPS_PATHS:
                op.setdefault("description", "Open to loopback clients; from elsewhere it needs an API key when keys are set.")
            if path in _PROXIED:  # vLLM's own error statuses and bodies come back unchanged
                for status in (400, 404):
                    responses.setdefault(str(status), {"description": f"vLLM's {status} (its error body)",
                                                       "content": {"application/json": {"schema": {"type": "object"}}}})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return spec


def install_openapi(app: FastAPI, settings: RouterSettings) -> None:
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "spec" not in cache:
            cache["spec"] = build_openapi(app, settings)
        return cache["spec"]

    app.openapi = openapi  # type: ignore[method-assign]
