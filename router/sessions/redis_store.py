"""Sessions in Redis (or Valkey): shared by every router process, kept across router restarts.

Keys per session (one hash tag, so a cluster keeps them on one slot): ``xedge:{<id>}:s`` (hash: tenant,
metadata, version, committed content), ``xedge:{<id>}:r`` (hash: request_id -> recorded reply) and
``xedge:{<id>}:o`` (list: request ids, oldest first, trimmed to ``records`` and ``reply_bytes``). ``xedge:live`` (sorted set,
score = expiry in ms of Redis' clock) counts live sessions for the ``max_sessions`` cap; creates are
recorded under ``xedge:c:<tenant>:<request_id>``. Every key expires ``ttl_s`` after the session's last
use (Redis' own expiry: no sweeper).

Each step is one Lua script, so it is atomic: ``commit`` writes content, version and reply only if the
version is still the one the router read (optimistic locking across router processes). A connection
error or timeout is ``RouterError("store_unavailable")`` (HTTP 503) and changes nothing; a commit whose
answer was lost is found by the client's retry (same request_id) as a recorded reply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from router.errors import RouterError
from router.sessions.codec import (
    CONTENT_FIELDS,
    decode_content,
    decode_meta,
    decode_reply,
    encode_content,
    encode_meta,
    encode_reply,
)
from router.sessions.content import Content
from router.sessions.store import Session, SessionStore, idempotency_conflict, replayed, unknown_session

log = logging.getLogger("router")
T = TypeVar("T")

#: Seconds to connect / to wait for an answer, and retries of one call (a connection reset, a timeout):
#: a store that refuses connections answers 503 at once, one that hangs in ~2 s.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 1.0
RETRIES = 1
LIVE = "xedge:live"

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

_ADD = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('ZCARD', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
return n + 1
"""

_FIELDS = ("tenant", "meta", "version", *CONTENT_FIELDS)
_GET = _NOW + """
local f = redis.call('HMGET', KEYS[1], 'tenant', 'meta', 'version', 'kind', 'ids', 'ends', 'text', 'holdback', 'n_start')
if not f[1] or f[1] ~= ARGV[3] then return false end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[4], 'XX', now + tonumber(ARGV[1]), ARGV[2])
return f
"""

_COMMIT = """
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'version', nv, unpack(ARGV, 7))
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[3])
local held = redis.call('HINCRBY', KEYS[1], 'rbytes', string.len(ARGV[4]))
local n = redis.call('LLEN', KEYS[3])
while n > tonumber(ARGV[5]) or (held > tonumber(ARGV[6]) and n > 1) do
  local old = redis.call('LPOP', KEYS[3])
  held = held - redis.call('HSTRLEN', KEYS[2], old)
  redis.call('HDEL', KEYS[2], old)
  n = n - 1
end
redis.call('HSET', KEYS[1], 'rbytes', held)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return nv
"""

_REMOVE = """
if redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
return 1
"""


def _keys(session_id: str) -> list[str]:
    return [f"xedge:{{{session_id}}}:s", f"xedge:{{{session_id}}}:r", f"xedge:{{{session_id}}}:o"]


class RedisSessionStore(SessionStore):
    def __init__(self, url: str, *, max_sessions: int, ttl_s: float, records: int, reply_bytes: int = 1 << 20) -> None:
        super().__init__(max_sessions=max_sessions, ttl_s=ttl_s, records=records, reply_bytes=reply_bytes)
        self._r = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
        )
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._add = self._r.register_script(_ADD)
        self._get = self._r.register_script(_GET)
        self._commit = self._r.register_script(_COMMIT)
        self._remove = self._r.register_script(_REMOVE)
        self._count = 0  # live sessions at this process's last add

    def __len__(self) -> int:
        return self._count

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            log.warning("session store (Redis) failed on %s: %s: %s", what, type(exc).__name__, exc)
            raise RouterError(
                "store_unavailable", f"the session store is unreachable ({what}); nothing was changed, retry later"
            ) from exc

    async def add(self, session: Session) -> None:
        fields: dict[str, bytes] = {
            "tenant": session.tenant.encode(),
            "meta": encode_meta(session.mode, session.sampling, session.replica, session.max_model_len),
            "version": str(session.version).encode(),
            **encode_content(session.content),
        }
        flat = [x for kv in fields.items() for x in kv]
        n = await self._call("add", self._add(keys=[_keys(session.id)[0], LIVE],
                                              args=[self._ttl_ms, self.max_sessions, session.id, *flat]))
        if n < 0:
            raise RouterError("rate_limited", f"the session store holds its maximum of {self.max_sessions} sessions")
        self._count = int(n)
        session.lock = self.lock_for(session.id)

    async def _load(self, session_id: str, tenant: str) -> list[bytes | None]:
        got = await self._call("get", self._get(keys=[*_keys(session_id), LIVE], args=[self._ttl_ms, session_id, tenant]))
        if not got:
            raise unknown_session(session_id)
        return got

    async def get(self, session_id: str, tenant: str) -> Session:
        f = dict(zip(_FIELDS, await self._load(session_id, tenant), strict=True))
        meta = decode_meta(f["meta"] or b"{}")
        return Session(
            id=session_id,
            tenant=tenant,
            mode=meta["mode"],  # type: ignore[arg-type]
            sampling=meta["sampling"],  # type: ignore[arg-type]
            replica=int(meta["replica"]),  # type: ignore[call-overload]
            content=decode_content(f),
            max_model_len=int(meta["max_model_len"]),  # type: ignore[call-overload]
            version=int(f["version"] or b"0"),
            lock=self.lock_for(session_id),
        )

    async def refresh(self, session: Session) -> None:
        f = dict(zip(_FIELDS, await self._load(session.id, session.tenant), strict=True))
        session.content = decode_content(f)
        session.version = int(f["version"] or b"0")

    async def remove(self, session_id: str, tenant: str) -> None:
        gone = await self._call("remove", self._remove(keys=[*_keys(session_id), LIVE], args=[tenant, session_id]))
        if not gone:
            raise unknown_session(session_id)
        self._count = max(0, self._count - 1)

    async def replay(self, session: Session, request_id: str, digest: str) -> BaseModel | None:
        hit = await self._call("replay", self._r.hget(_keys(session.id)[1], request_id))
        return replayed(hit, request_id, digest)

    async def commit(self, session: Session, content: Content, request_id: str, digest: str, reply: BaseModel) -> bool:
        flat = [x for kv in encode_content(content).items() for x in kv]
        args = [session.version, self._ttl_ms, request_id, encode_reply(digest, reply), self.records, self.reply_bytes,
                *flat]
        version = await self._call("commit", self._commit(keys=_keys(session.id), args=args))
        if version < 0:
            raise RouterError("unknown_session", f"session {session.id!r} was deleted or expired")
        if version == 0:
            return False  # another router committed first: the caller starts over on the newer state
        session.content = content
        session.version = int(version)
        return True

    @staticmethod
    def _create_key(tenant: str, request_id: str) -> str:
        return f"xedge:c:{tenant}:{request_id}"

    async def create_replay(self, tenant: str, request_id: str, digest: str) -> BaseModel | None:
        hit = await self._call("create replay", self._r.get(self._create_key(tenant, request_id)))
        return replayed(hit, request_id, digest)

    async def create_record(self, tenant: str, request_id: str, digest: str, reply: BaseModel) -> BaseModel:
        key = self._create_key(tenant, request_id)
        earlier = await self._call("create record", self._r.set(key, encode_reply(digest, reply), nx=True,
                                                                 px=self._ttl_ms, get=True))
        if earlier is None:
            return reply
        # A duplicate create finished first on another router: answer with its session, drop ours.
        mine = getattr(getattr(reply, "state", None), "session_id", None)
        if mine is not None:
            try:
                await self.remove(mine, tenant)
            except RouterError:
                log.warning("could not remove duplicate session %s of create %r", mine, request_id)
        earlier_digest, earlier_reply = decode_reply(earlier)
        if earlier_digest != digest:
            raise idempotency_conflict(request_id)
        return earlier_reply

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self._r.aclose()
