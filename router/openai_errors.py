"""The router's own errors on the OpenAI-compatible routes, in OpenAI's shape.

vLLM answers errors as ``{"error": {"message", "type", "param", "code"}}`` and the router relays them
unchanged; the ``openai`` client reads ``message`` / ``type`` / ``param`` / ``code`` from that object. The
router's own refusals on those routes (401, 408, 413, 422, 429, 503) carry the same ``error`` object
next to the edge protocol's ``detail`` (which the router's other clients and its metrics read):
``type`` as OpenAI names it for the status, ``code`` the router's error code.
"""

from __future__ import annotations

from typing import Any

#: Paths of the OpenAI-compatible surface (``router.api.openai``).
MODELS_PATH = "/v1/models"
COMPLETIONS_PATH = "/v1/completions"
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
OPENAI_PATHS = frozenset({MODELS_PATH, COMPLETIONS_PATH, CHAT_COMPLETIONS_PATH})

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error body."""
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"message": message, "type": kind, "param": param, "code": code}
