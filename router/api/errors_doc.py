"""OpenAPI documentation of the error bodies the edge routes can return."""

from __future__ import annotations

from typing import Any

from client_edge.protocol import ErrorResponse


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "bad input (out-of-vocab ids, fingerprint or mode mismatch, context overflow, k/n out of range)",
        404: "unknown session",
        409: "base mismatch (detail.state = what the cloud holds) or request_id reused with another body",
        413: "body over the size limit",
        422: "body failed validation",
        502: "the vLLM replica answered with an error",
        503: "the vLLM replica cannot be reached",
    }
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}
