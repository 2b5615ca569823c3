"""Typed errors of the edge SDK, shaped like openai-python's.

``XEdgeError`` is the root. Transport failures are ``APIConnectionError`` (``APITimeoutError`` when a
timeout fired); an HTTP answer outside 2xx is an ``APIStatusError`` subclass picked by status code, so
callers catch exactly what they can handle (``ConflictError`` -> resync, ``NotFoundError`` -> new session).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from client_edge.protocol import ErrorInfo, ErrorResponse
from client_edge.protocol.registry import UnknownNameError as RegistryNameError


class XEdgeError(Exception):
    """Root of every error the edge SDK raises on purpose."""


class UnknownNameError(XEdgeError, RegistryNameError):
    """A registry was asked for a name it does not know; the message lists the valid names."""


class ModelFileError(XEdgeError, ValueError):
    """A local model file cannot be used: unreadable, not a GGUF, or not what the runner needs."""


class NotACausalLMError(ModelFileError):
    """The model file holds something other than a causal (next-token) language model."""


class ContextLengthError(XEdgeError, ValueError):
    """A prompt (plus the tokens asked for) is longer than the local model's context."""


class HiddenStatesUnavailableError(XEdgeError):
    """A gate needs the model's hidden states and the runner does not expose them."""


class InvalidLogitsError(XEdgeError, ValueError):
    """A runner's logits hold NaN or +inf, or nothing finite (or, for the mlp gate, its hidden state holds NaN or
    inf): no gate can score them (a broken model)."""


class TokenizerMismatchError(XEdgeError):
    """Token mode needs the edge and the cloud to share a tokenizer; their fingerprints differ."""


class UnsupportedParameterError(XEdgeError, ValueError):
    """A chat-completions request uses a field or value the edge client does not implement."""


class APIError(XEdgeError):
    """A call to the router failed. ``request`` is the httpx request that failed, when one was built."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The router could not be reached (refused, reset, DNS, protocol error)."""

    def __init__(self, message: str = "connection error", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """A connect, read, write or pool timeout fired, or the call's deadline passed."""

    def __init__(self, message: str = "request timed out", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """The router answered 2xx with a body that does not match the protocol models."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response


class CloudProtocolError(APIError):
    """The router answered 2xx with a well-formed body whose content breaks the protocol: a committed
    state other than the one the request asked for, more tokens than ``k``, token ids outside the
    vocabulary, more accepted than drafted. The session treats it like any failed call: it keeps its
    own tokens (UNVERIFIED) and the next call resyncs."""


class APIStatusError(APIError):
    """The router answered with a status outside 2xx. ``body`` is the decoded JSON (or text) it sent;
    ``info`` is its protocol ``ErrorInfo`` (code, message, session state) when the body has one."""

    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = body
        try:
            self.info: ErrorInfo | None = ErrorResponse.model_validate(body).detail
        except ValidationError:
            self.info = None

    @property
    def code(self) -> str | None:
        return None if self.info is None else self.info.code


class BadRequestError(APIStatusError):
    """400: the router rejected the request (bad token ids, k/n out of range, ...)."""


class AuthenticationError(APIStatusError):
    """401."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: for example the session does not exist (expired or deleted)."""


class ConflictError(APIStatusError):
    """409: the request's base does not match what the cloud holds; ``body`` says what it holds."""


class RequestTooLargeError(APIStatusError):
    """413: body over the router's size limit."""


class UnprocessableEntityError(APIStatusError):
    """422: the body failed validation."""


class RateLimitError(APIStatusError):
    """429."""


class InternalServerError(APIStatusError):
    """5xx."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_from_response(response: httpx.Response) -> APIStatusError:
    """Build the typed error for a non-2xx ``response`` (its body must already be read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict) and "message" in detail:
        detail = f"{detail.get('code', '')}: {detail['message']}"
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    message = (
        f"HTTP {response.status_code} from {response.request.method} {response.request.url.path}: {detail}"
    )
    return cls(message, response=response, body=body)
