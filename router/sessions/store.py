"""In-memory session store: sessions per tenant, a lock per session, TTL expiry and replayable replies.

Idempotency: each session keeps the last ``records`` replies keyed by ``request_id`` together with a
digest of the request body. A retry (same id, same body) gets the recorded reply; the same id with a
different body is a conflict. Creates are recorded store-wide per (tenant, request_id).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel

from client_edge.protocol import SamplingSettings, SessionMode, SessionState
from router.errors import RouterError
from router.sessions.content import Content


def body_digest(body: BaseModel) -> str:
    return hashlib.blake2b(body.model_dump_json().encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class Session:
    id: str
    tenant: str
    mode: SessionMode
    sampling: SamplingSettings
    replica: int
    content: Content
    max_model_len: int
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    replies: OrderedDict[str, tuple[str, BaseModel]] = field(default_factory=OrderedDict)

    def state(self, content: Content | None = None, *, include_content: bool = False) -> SessionState:
        """The session's state, or what it will be once ``content`` is committed."""
        c = content if content is not None else self.content
        return SessionState(
            session_id=self.id,
            mode=self.mode,
            committed=c.ref(),
            checkpoints=c.checkpoints(),
            cloud_tokens=c.cloud_tokens,
            sampling=self.sampling,
            tenant=self.tenant,
            replica=self.replica,
            max_model_len=self.max_model_len,
            token_ids=list(getattr(c, "ids", ())) if include_content and self.mode == "token" else None,
            text=getattr(c, "text", None) if include_content and self.mode == "text" else None,
        )

    def replay(self, request_id: str, digest: str) -> BaseModel | None:
        """The recorded reply to ``request_id``, None if new; a conflict if the body differs."""
        hit = self.replies.get(request_id)
        if hit is None:
            return None
        if hit[0] != digest:
            raise RouterError(
                "idempotency_conflict", f"request_id {request_id!r} was already used with a different body"
            )
        return hit[1]

    def record(self, request_id: str, digest: str, reply: BaseModel, limit: int) -> None:
        self.replies[request_id] = (digest, reply)
        while len(self.replies) > limit:
            self.replies.popitem(last=False)


class SessionStore:
    def __init__(self, *, max_sessions: int, ttl_s: float, records: int) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.records = records
        self._sessions: dict[str, Session] = {}
        self._creates: OrderedDict[tuple[str, str], tuple[str, BaseModel]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    @staticmethod
    def new_id() -> str:
        return "s_" + uuid.uuid4().hex

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self._sessions.values() if now - s.last_used > self.ttl_s and not s.lock.locked()]:
            del self._sessions[sid]

    def add(self, session: Session) -> None:
        self._expire()
        if len(self._sessions) >= self.max_sessions:
            raise RouterError("rate_limited", f"the router holds its maximum of {self.max_sessions} sessions")
        self._sessions[session.id] = session

    def get(self, session_id: str, tenant: str) -> Session:
        session = self._sessions.get(session_id)
        if session is not None and time.monotonic() - session.last_used > self.ttl_s and not session.lock.locked():
            del self._sessions[session_id]
            session = None
        # Another tenant's session is reported exactly like a missing one.
        if session is None or session.tenant != tenant:
            raise RouterError("unknown_session", f"no session {session_id!r} (never created, deleted or expired)")
        session.last_used = time.monotonic()
        return session

    def holds(self, session: Session) -> bool:
        return self._sessions.get(session.id) is session

    def remove(self, session_id: str, tenant: str) -> Session:
        session = self.get(session_id, tenant)
        del self._sessions[session_id]
        return session

    def create_replay(self, tenant: str, request_id: str, digest: str) -> BaseModel | None:
        hit = self._creates.get((tenant, request_id))
        if hit is None:
            return None
        if hit[0] != digest:
            raise RouterError("idempotency_conflict", f"request_id {request_id!r} was already used with a different body")
        return hit[1]

    def create_record(self, tenant: str, request_id: str, digest: str, reply: BaseModel) -> None:
        self._creates[(tenant, request_id)] = (digest, reply)
        while len(self._creates) > self.max_sessions:
            self._creates.popitem(last=False)
