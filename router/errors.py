"""Typed API errors of the router and their HTTP rendering (``{"detail": ErrorInfo}``; on the OpenAI
routes also OpenAI's ``{"error": ...}``, see ``router.openai_errors``)."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from client_edge.protocol import ErrorCode, ErrorInfo, SessionState
from router.openai_errors import OPENAI_PATHS, openai_error

log = logging.getLogger("router")

_STATUS: dict[str, int] = {
    "invalid_request": 422,
    "unsupported_protocol_version": 400,
    "unknown_session": 404,
    "base_mismatch": 409,
    "idempotency_conflict": 409,
    "mode_mismatch": 400,
    "fingerprint_mismatch": 400,
    "token_out_of_vocab": 400,
    "context_overflow": 400,
    "out_of_range": 400,
    "unsupported": 400,
    "body_too_large": 413,
    "unauthorized": 401,
    "rate_limited": 429,
    "engine_unavailable": 503,
    "engine_error": 502,
    "store_unavailable": 503,
    "internal": 500,
}


class RouterError(Exception):
    """An error with a protocol ``code``; the HTTP status follows from the code."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        state: SessionState | None = None,
        retry_after_s: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.state = state
        self.retry_after_s = retry_after_s  # for 429 / 503: sent as Retry-After (whole seconds, at least 1)
        self.param = param  # the request field at fault (OpenAI routes: ``error.param``)

    @property
    def status(self) -> int:
        return _STATUS[self.code]

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, state=self.state)


def error_headers(status: int, retry_after_s: float | None = None) -> dict[str, str]:
    """RFC 9110 headers of an error status: ``Retry-After`` on 429 (and on 503 when known),
    ``WWW-Authenticate`` on 401."""
    headers: dict[str, str] = {}
    if status == 429 or (status == 503 and retry_after_s is not None):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s if retry_after_s is not None else 1.0)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="xedge"'
    return headers


def error_response(
    status: int, info: ErrorInfo, *, retry_after_s: float | None = None, path: str = "", param: str | None = None
) -> JSONResponse:
    """``{"detail": info}``; on an OpenAI route (``path``) also OpenAI's ``{"error": ...}`` for its clients."""
    content = {"detail": info.model_dump(mode="json", exclude_none=True)}
    if path in OPENAI_PATHS:
        content["error"] = openai_error(status, info.message, info.code, param)
    return JSONResponse(status_code=status, content=content, headers=error_headers(status, retry_after_s))


def install_error_handlers(app: FastAPI) -> None:
    """Render RouterError, validation errors, HTTP errors and unexpected errors in the protocol's shape."""

    @app.exception_handler(RouterError)
    async def _router_error(request: Request, exc: RouterError) -> JSONResponse:
        path = request.scope["path"]
        return error_response(exc.status, exc.info(), retry_after_s=exc.retry_after_s, path=path, param=exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        info = ErrorInfo(code="invalid_request", message="; ".join(parts))
        return error_response(422, info, path=request.scope["path"])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework-level errors (unknown path, wrong method): not a protocol condition of its own.
        info = ErrorInfo(code="invalid_request", message=str(exc.detail))
        return error_response(exc.status_code, info, path=request.scope["path"])

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        info = ErrorInfo(code="internal", message="internal error (logged by the router)")
        return error_response(500, info, path=request.scope["path"])
