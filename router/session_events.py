"""What the router tells each replica's eviction policy about edge sessions (session-aware eviction).

Every engine call of an edge session carries the session's opaque key (a hash of tenant and id: the
id itself never leaves the router) and its TTL; a DELETE is queued per replica and announced on the
router's next calls to that replica (``xedge_closed_sessions``, at most
``engine_xargs.MAX_CLOSED_SESSIONS`` per call). A queued close that is never sent (the router stops,
or the queue is full) costs nothing but cache: the engine closes the session when its TTL runs out.
The keys are ``client_edge/protocol/engine_xargs.py``'s; the policy is ``server/engine/prefix_cache/session.py``.
"""

from __future__ import annotations

import hashlib
from collections import deque

from client_edge.protocol.engine_xargs import MAX_CLOSED_SESSIONS

MAX_PENDING_CLOSES = 4096  # per replica; older announcements are dropped first (the TTL still ends them)


def session_key(tenant: str, session_id: str) -> str:
    """The opaque key the engine sees for a session: 16 hex digits of sha256(tenant, id)."""
    return hashlib.sha256(f"{tenant}\0{session_id}".encode()).hexdigest()[:16]


class SessionEvents:
    def __init__(self, max_pending: int = MAX_PENDING_CLOSES) -> None:
        self._closed: dict[int, deque[str]] = {}
        self._max_pending = max_pending
        self.dropped = 0  # closes never announced because the queue was full

    def closed(self, replica: int, tenant: str, session_id: str) -> None:
        """A session on ``replica`` ended (DELETE): announce it on the next calls there."""
        queue = self._closed.setdefault(replica, deque())
        if len(queue) >= self._max_pending:
            queue.popleft()
            self.dropped += 1
        queue.append(session_key(tenant, session_id))

    def take(self, replica: int) -> tuple[str, ...]:
        """The closes to announce on this call to ``replica`` (removed from the queue)."""
        queue = self._closed.get(replica)
        if not queue:
            return ()
        return tuple(queue.popleft() for _ in range(min(len(queue), MAX_CLOSED_SESSIONS)))
