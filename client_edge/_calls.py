"""The edge protocol's endpoints, written once for ``EdgeClient`` and ``AsyncEdgeClient``.

Each method builds the endpoint's ``Call`` and hands it to the client's ``_request``: the sync client
returns the parsed answer, the async client returns an awaitable of it (``await client.info()``).
"""

from __future__ import annotations

from typing import Any

from client_edge._base_client import Call, RequestOptions
from client_edge.protocol import (
    CloudInfo,
    CreateSessionRequest,
    EscalateRequest,
    EscalateResponse,
    Paths,
    SessionResponse,
    SyncRequest,
    TruncateRequest,
    VerifyRequest,
    VerifyResponse,
)

_NO_OPTIONS = RequestOptions()


class Endpoints:
    """Mixin: needs ``_request(call, options)`` (returns the answer, or an awaitable of it)."""

    def _request(self, call: Call[Any], options: RequestOptions) -> Any:
        raise NotImplementedError

    def info(self, options: RequestOptions = _NO_OPTIONS) -> CloudInfo:
        return self._request(Call("GET", Paths.INFO, None, CloudInfo), options)

    def create_session(
        self, body: CreateSessionRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        return self._request(Call("POST", Paths.SESSIONS, body, SessionResponse, body.request_id), options)

    def get_session(
        self, session_id: str, include_content: bool = False, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        params = {"include_content": "true"} if include_content else None
        path = Paths.SESSION.format(session_id=session_id)
        return self._request(Call("GET", path, None, SessionResponse, params=params), options)

    def delete_session(self, session_id: str, options: RequestOptions = _NO_OPTIONS) -> None:
        return self._request(Call("DELETE", Paths.SESSION.format(session_id=session_id), None, None), options)

    def escalate(
        self, session_id: str, body: EscalateRequest, options: RequestOptions = _NO_OPTIONS
    ) -> EscalateResponse:
        path = Paths.ESCALATE.format(session_id=session_id)
        return self._request(Call("POST", path, body, EscalateResponse, body.request_id), options)

    def verify(
        self, session_id: str, body: VerifyRequest, options: RequestOptions = _NO_OPTIONS
    ) -> VerifyResponse:
        path = Paths.VERIFY.format(session_id=session_id)
        return self._request(Call("POST", path, body, VerifyResponse, body.request_id), options)

    def sync(
        self, session_id: str, body: SyncRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        path = Paths.SYNC.format(session_id=session_id)
        return self._request(Call("POST", path, body, SessionResponse, body.request_id), options)

    def truncate(
        self, session_id: str, body: TruncateRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        path = Paths.TRUNCATE.format(session_id=session_id)
        return self._request(Call("POST", path, body, SessionResponse, body.request_id), options)
