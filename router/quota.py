"""Per-tenant caps, so that no tenant can take the router from the others (issue 16, findings 2 and 3).

:class:`TenantQuota` bounds, for each tenant, the edge sessions it holds (``tenant_max_sessions``), the
bytes they hold (committed content plus the replies kept for retries, ``tenant_max_bytes``) and its
requests in flight on any route (``tenant_max_concurrent``). A request over a cap is answered 429
``rate_limited`` with ``Retry-After`` and changes nothing; the global caps (``max_sessions``) stay as a
last line. The counts are this router process's (sessions are counted where they were created; with
a shared store each process bounds what it admits).

Sessions idle longer than ``session_ttl_s`` are dropped from the counts as the store expires them
(every request that loads a session renews both).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from client_edge.protocol import SessionResponse
from router.errors import RouterError
from router.sessions.content import Content
from router.settings import RouterSettings

T = TypeVar("T")
_REPLY_RETRY_S = 5.0  # Retry-After for a cap that frees up only when the tenant closes sessions


@dataclass
class _Held:
    content_bytes: int = 0
    replies: list[int] = field(default_factory=list)  # bytes of the last recorded replies, oldest first
    last_used: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return self.content_bytes + sum(self.replies)


def content_bytes(content: Content) -> int:
    """What a session's committed content costs to hold: 4 bytes per cloud token id (as the stores pack
    them), 4 per text offset, and the text's UTF-8 bytes."""
    text = getattr(content, "text", "")
    return 4 * content.cloud_tokens + 4 * len(getattr(content, "ends", ())) + len(text.encode("utf-8", "surrogatepass"))


class TenantQuota:
    def __init__(self, settings: RouterSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_sessions = settings.tenant_max_sessions
        self.max_bytes = settings.tenant_max_bytes
        self.max_concurrent = settings.tenant_max_concurrent
        self.records = settings.idempotency_records
        self.ttl_s = settings.session_ttl_s
        self._clock = clock
        self._sessions: dict[str, dict[str, _Held]] = {}
        self._pending: dict[str, int] = {}  # creates admitted and not finished, per tenant
        self._in_flight: dict[str, int] = {}

    # -- requests in flight --------------------------------------------------------------------------

    @contextlib.contextmanager
    def request(self, tenant: str) -> Iterator[None]:
        """Hold one of the tenant's ``tenant_max_concurrent`` request slots."""
        n = self._in_flight.get(tenant, 0)
        if n >= self.max_concurrent:
            raise RouterError(
                "rate_limited",
                f"tenant has {n} requests in flight, the most this router serves per tenant at once; retry shortly",
                retry_after_s=1.0,
            )
        self._in_flight[tenant] = n + 1
        try:
            yield
        finally:
            left = self._in_flight[tenant] - 1
            if left:
                self._in_flight[tenant] = left
            else:
                del self._in_flight[tenant]

    def in_flight(self, tenant: str) -> int:
        return self._in_flight.get(tenant, 0)

    # -- sessions and bytes --------------------------------------------------------------------------

    def _held(self, tenant: str) -> dict[str, _Held]:
        held = self._sessions.get(tenant)
        if held is None:
            return {}
        now = self._clock()
        for sid in [s for s, h in held.items() if now - h.last_used > self.ttl_s]:
            del held[sid]
        if not held:
            del self._sessions[tenant]
        return held

    def sessions(self, tenant: str) -> int:
        return len(self._held(tenant))

    def bytes_held(self, tenant: str) -> int:
        return sum(h.total for h in self._held(tenant).values())

    def _check_bytes(self, tenant: str, extra: int) -> None:
        held = self.bytes_held(tenant)
        if held + extra > self.max_bytes:
            raise RouterError(
                "rate_limited",
                f"tenant would hold {held + extra} bytes of session state, over its limit of {self.max_bytes}; "
                "delete sessions it no longer needs",
                retry_after_s=_REPLY_RETRY_S,
            )

    @contextlib.contextmanager
    def creating(self, tenant: str) -> Iterator[Callable[[SessionResponse], None]]:
        """Admit one session create: ``rate_limited`` at the tenant's session cap or when it already holds
        its byte budget. The create calls the yielded ``opened(reply)`` once the session is stored."""
        pending = self._pending.get(tenant, 0)
        if self.sessions(tenant) + pending >= self.max_sessions:
            raise RouterError(
                "rate_limited",
                f"tenant holds {self.sessions(tenant)} sessions, the most this router keeps per tenant "
                f"({self.max_sessions}); delete sessions it no longer needs",
                retry_after_s=_REPLY_RETRY_S,
            )
        self._check_bytes(tenant, 0)
        self._pending[tenant] = pending + 1

        def opened(reply: SessionResponse) -> None:
            state = reply.state
            # Until its first operation: ids as packed, plus the text (at most 4 UTF-8 bytes a character).
            size = 8 * state.cloud_tokens + (4 * state.committed.length if state.mode == "text" else 0)
            held = _Held(size, [len(reply.model_dump_json())], self._clock())
            self._sessions.setdefault(tenant, {})[state.session_id] = held

        try:
            yield opened
        finally:
            left = self._pending[tenant] - 1
            if left:
                self._pending[tenant] = left
            else:
                del self._pending[tenant]

    def metered(
        self, tenant: str, session_id: str, op: Callable[[], Awaitable[tuple[Content, T]]]
    ) -> Callable[[], Awaitable[tuple[Content, T]]]:
        """Wrap a session operation: once it has built its new content and reply (and before either is
        committed), refuse it with ``rate_limited`` if the tenant would exceed its byte budget."""

        async def run() -> tuple[Content, T]:
            content, reply = await op()
            held = self._held(tenant).get(session_id)
            size = content_bytes(content)
            reply_size = len(reply.model_dump_json()) if isinstance(reply, BaseModel) else 0
            if held is None:  # created by another router process, or expired from the counts
                held = self._sessions.setdefault(tenant, {}).setdefault(session_id, _Held())
            replies = [*held.replies, reply_size][-self.records :]
            self._check_bytes(tenant, max(0, size + sum(replies) - held.total))
            held.content_bytes, held.replies, held.last_used = size, replies, self._clock()
            return content, reply

        return run

    def used(self, tenant: str, session_id: str) -> None:
        """The store renewed the session's TTL (any request on it): keep counting it as long as the store
        keeps it, or a tenant that only reads its sessions would hold more than its cap."""
        held = self._held(tenant).get(session_id)
        if held is not None:
            held.last_used = self._clock()

    def closed(self, tenant: str, session_id: str) -> None:
        held = self._sessions.get(tenant)
        if held is not None:
            held.pop(session_id, None)
            if not held:
                del self._sessions[tenant]
