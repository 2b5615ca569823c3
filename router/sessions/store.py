"""Session stores: where edge sessions, their recorded replies and create records live.

:class:`SessionStore` is the contract; :class:`MemorySessionStore` (this process only, the default for a
single ``xedge serve``) and ``router.sessions.redis_store.RedisSessionStore`` (shared by every router
process, survives a router restart) implement it. :func:`open_store` picks one from the
``session_store`` setting.

Contract (every method may raise ``RouterError("store_unavailable")`` when the store cannot be reached;
nothing is then changed):

- ``add`` stores a new session (``rate_limited`` when the store holds ``max_sessions``); ``get`` loads it
  for its tenant and renews its TTL (another tenant's session reads as ``unknown_session``, exactly like
  a missing one); ``remove`` deletes it.
- ``refresh(session)`` reloads the committed content and version in place (``unknown_session`` if it was
  deleted or expired meanwhile); ``commit`` swaps new content in and records the reply to ``request_id``
  in one atomic step, only if nobody committed since the session's version was read (else it returns
  False and changes nothing: the caller starts over on the newer state). ``replay`` returns the reply
  recorded for a retried ``request_id`` (``idempotency_conflict`` if the body differs).
- ``create_replay`` / ``create_record``: creates are recorded per (tenant, request_id); the first record
  wins (a concurrent duplicate create on another router gets the winner's reply, its own session removed).

Idempotency: each session keeps the last ``records`` replies keyed by ``request_id`` together with a
digest of the request body, as compact JSON bytes (router.sessions.codec), and at most ``reply_bytes`` of
them (oldest dropped first; the newest is always kept). A retry whose reply was dropped runs again: its
base no longer matches (409) unless it committed nothing new.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel

from client_edge.protocol import SamplingSettings, SessionMode, SessionState
from router.errors import RouterError
from router.sessions.codec import decode_reply, encode_reply
from router.sessions.content import Content


def body_digest(body: BaseModel) -> str:
    return hashlib.blake2b(body.model_dump_json().encode("utf-8"), digest_size=16).hexdigest()


def unknown_session(session_id: str) -> RouterError:
    return RouterError("unknown_session", f"no session {session_id!r} (never created, deleted or expired)")


def idempotency_conflict(request_id: str) -> RouterError:
    return RouterError("idempotency_conflict", f"request_id {request_id!r} was already used with a different body")


@dataclass
class Session:
    """One edge session as this router process sees it. ``version`` counts commits (optimistic locking);
    ``lock`` serialises this process's requests on the session (the store hands out one per id)."""

    id: str
    tenant: str
    mode: SessionMode
    sampling: SamplingSettings
    replica: int
    content: Content
    max_model_len: int
    version: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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


class SessionStore(abc.ABC):
    """The store contract (module docstring). ``len(store)``: sessions held, as last seen by this process."""

    def __init__(self, *, max_sessions: int, ttl_s: float, records: int, reply_bytes: int = 1 << 20) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.records = records
        self.reply_bytes = reply_bytes
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @staticmethod
    def new_id() -> str:
        return "s_" + uuid.uuid4().hex

    def lock_for(self, session_id: str) -> asyncio.Lock:
        """This process's lock for a session id (one while any loaded copy of the session is alive)."""
        lock = self._locks.get(session_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[session_id] = lock
        return lock

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    async def add(self, session: Session) -> None: ...

    @abc.abstractmethod
    async def get(self, session_id: str, tenant: str) -> Session: ...

    @abc.abstractmethod
    async def refresh(self, session: Session) -> None: ...

    @abc.abstractmethod
    async def remove(self, session_id: str, tenant: str) -> None: ...

    @abc.abstractmethod
    async def replay(self, session: Session, request_id: str, digest: str) -> BaseModel | None: ...

    @abc.abstractmethod
    async def commit(self, session: Session, content: Content, request_id: str, digest: str, reply: BaseModel) -> bool: ...

    @abc.abstractmethod
    async def create_replay(self, tenant: str, request_id: str, digest: str) -> BaseModel | None: ...

    @abc.abstractmethod
    async def create_record(self, tenant: str, request_id: str, digest: str, reply: BaseModel) -> BaseModel: ...

    async def ping(self) -> bool:
        """Whether the store answers (always, for one in this process)."""
        return True

    async def aclose(self) -> None:  # noqa: B027 - optional hook, default is nothing to release
        """Release connections (default: none)."""


def replayed(hit: bytes | None, request_id: str, digest: str) -> BaseModel | None:
    if hit is None:
        return None
    recorded_digest, reply = decode_reply(hit)
    if recorded_digest != digest:
        raise idempotency_conflict(request_id)
    return reply


class MemorySessionStore(SessionStore):
    """Sessions in this process's memory: fast, lost on restart, not shared with other router processes."""

    def __init__(self, *, max_sessions: int, ttl_s: float, records: int, reply_bytes: int = 1 << 20) -> None:
        super().__init__(max_sessions=max_sessions, ttl_s=ttl_s, records=records, reply_bytes=reply_bytes)
        self._sessions: dict[str, Session] = {}
        self._replies: dict[str, OrderedDict[str, bytes]] = {}
        self._creates: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop(self, session_id: str) -> None:
        del self._sessions[session_id]
        self._replies.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self._sessions.values() if now - s.last_used > self.ttl_s and not s.lock.locked()]:
            self._drop(sid)

    async def add(self, session: Session) -> None:
        self._expire()
        if len(self._sessions) >= self.max_sessions:
            raise RouterError("rate_limited", f"the router holds its maximum of {self.max_sessions} sessions")
        session.lock = self.lock_for(session.id)
        self._sessions[session.id] = session
        self._replies[session.id] = OrderedDict()

    async def get(self, session_id: str, tenant: str) -> Session:
        session = self._sessions.get(session_id)
        if session is not None and time.monotonic() - session.last_used > self.ttl_s and not session.lock.locked():
            self._drop(session_id)
            session = None
        # Another tenant's session is reported exactly like a missing one.
        if session is None or session.tenant != tenant:
            raise unknown_session(session_id)
        session.last_used = time.monotonic()
        return session

    async def refresh(self, session: Session) -> None:
        if self._sessions.get(session.id) is not session:  # deleted or expired while a request waited
            raise RouterError("unknown_session", f"session {session.id!r} was deleted or expired")

    async def remove(self, session_id: str, tenant: str) -> None:
        await self.get(session_id, tenant)
        self._drop(session_id)

    async def replay(self, session: Session, request_id: str, digest: str) -> BaseModel | None:
        return replayed(self._replies.get(session.id, {}).get(request_id), request_id, digest)

    async def commit(self, session: Session, content: Content, request_id: str, digest: str, reply: BaseModel) -> bool:
        await self.refresh(session)
        replies = self._replies[session.id]
        replies[request_id] = encode_reply(digest, reply)
        held = sum(len(r) for r in replies.values())
        while len(replies) > self.records or (held > self.reply_bytes and len(replies) > 1):
            held -= len(replies.popitem(last=False)[1])
        session.content = content
        session.version += 1
        return True

    async def create_replay(self, tenant: str, request_id: str, digest: str) -> BaseModel | None:
        return replayed(self._creates.get((tenant, request_id)), request_id, digest)

    async def create_record(self, tenant: str, request_id: str, digest: str, reply: BaseModel) -> BaseModel:
        self._creates[(tenant, request_id)] = encode_reply(digest, reply)
        while len(self._creates) > self.max_sessions:
            self._creates.popitem(last=False)
        return reply


def open_store(url: str, *, max_sessions: int, ttl_s: float, records: int, reply_bytes: int = 1 << 20) -> SessionStore:
    """``memory`` -> :class:`MemorySessionStore`; ``redis://``, ``rediss://`` or ``unix://`` -> Redis."""
    limits = {"max_sessions": max_sessions, "ttl_s": ttl_s, "records": records, "reply_bytes": reply_bytes}
    if url == "memory":
        return MemorySessionStore(**limits)  # type: ignore[arg-type]
    from router.sessions.redis_store import RedisSessionStore

    return RedisSessionStore(url, **limits)  # type: ignore[arg-type]
