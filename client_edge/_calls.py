"""The edge protocol's endpoints as ``Call`` values, built once for the sync and the async client."""

from __future__ import annotations

from client_edge._base_client import Call
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


def info() -> Call[CloudInfo]:
    return Call("GET", Paths.INFO, None, CloudInfo)


def create_session(body: CreateSessionRequest) -> Call[SessionResponse]:
    return Call("POST", Paths.SESSIONS, body, SessionResponse, body.request_id)


def get_session(session_id: str, include_content: bool = False) -> Call[SessionResponse]:
    params = {"include_content": "true"} if include_content else None
    return Call("GET", Paths.SESSION.format(session_id=session_id), None, SessionResponse, params=params)


def delete_session(session_id: str) -> Call[SessionResponse]:
    return Call("DELETE", Paths.SESSION.format(session_id=session_id), None, None)


def escalate(session_id: str, body: EscalateRequest) -> Call[EscalateResponse]:
    return Call("POST", Paths.ESCALATE.format(session_id=session_id), body, EscalateResponse, body.request_id)


def verify(session_id: str, body: VerifyRequest) -> Call[VerifyResponse]:
    return Call("POST", Paths.VERIFY.format(session_id=session_id), body, VerifyResponse, body.request_id)


def sync(session_id: str, body: SyncRequest) -> Call[SessionResponse]:
    return Call("POST", Paths.SYNC.format(session_id=session_id), body, SessionResponse, body.request_id)


def truncate(session_id: str, body: TruncateRequest) -> Call[SessionResponse]:
    return Call("POST", Paths.TRUNCATE.format(session_id=session_id), body, SessionResponse, body.request_id)
