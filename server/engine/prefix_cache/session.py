"""``session``: session-aware eviction, from what the router knows about edge sessions.

The router tags every engine call of an edge session with the session's key and TTL, marks a
session's last call, and announces sessions closed by DELETE on its next calls to the replica
(``client_edge.protocol.engine_xargs``, keys ``xedge_session*``). A block belongs to the session whose
request last cached or hit it. A session is live until closed, or until ``session_ttl_s`` passes
without a request of it (the router's TTL expiry needs no announcement).

Protection: a live session is protected as soon as its blocks fit in what is left of the budget
(``PolicyConfig.session_share`` of the cache, less the blocks of the largest session seen, so that a
request of any session finds its blocks without evicting protected ones), first come first served,
and keeps it while it stays active: a protected session idle for more than ``session_idle_factor`` x
the mean gap between a session's requests (and at least ``session_idle_min_s``) loses it and its
free blocks become stale. A gap runs from the end of one request of the session (its blocks freed) to
the start of the next; the time a request holds its blocks is not a gap (counting it, on an engine
whose prefills take a second, made the mean gap small enough to take protection from sessions in
use). The budget never goes below 0 (a session as large as the cache). A stable protected set is
what keeps sessions whose contexts together exceed the cache from evicting each other in turn (what
LRU does to sessions that escalate in rotation); the idle rule keeps abandoned sessions (waiting for
their TTL) from holding the budget.

Eviction order, first victim first:
1. free blocks of closed or expired sessions (oldest close first);
2. while the protected sessions hold more than the budget (they grow): free blocks of the most
   recently protected session, deepest first (with none left it loses its protection);
3. free blocks of sessions that lost protection by idling (stale; in the order they went stale);
4. every other free block (no session, or an unprotected session), in the order of the inner policy
   (``PolicyConfig.session_inner``, default ``lru``);
5. free blocks of protected sessions (the most recently protected first, deepest first).
Within a session the deepest blocks go first, so a partly evicted session recomputes only its tail.

The inner policy knows exactly the blocks in use and the free blocks of step 4. Per event O(1) (plus
the closed keys a request carries); granting or taking protection costs O(the session's blocks).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.policy import EvictionPolicy, OwnStat

USED, INNER, ASIDE, CLOSED, STALE = range(5)  # where a cached block is
#: The steps of the eviction order (module docstring), as ``own_stats`` counts victims.
EVICTION_KINDS = ("closed", "over_budget", "stale", "unprotected", "protected")
_NO_META = RequestMeta()


class _Session:
    __slots__ = ("key", "expires", "last", "between", "turn", "turn_gap", "blocks", "aside", "protected")

    def __init__(self, key: str, now: float) -> None:
        self.key = key
        self.expires = float("inf")
        self.last = now
        self.between = False  # its last request freed its blocks and no later request started yet
        # ``session-due``'s clock (session requests started, over all sessions): the request it last
        # started, and its own mean gap in requests (EWMA), once it had one
        self.turn = 0
        self.turn_gap: float | None = None
        self.blocks: set[int] = set()  # cached blocks it owns (free or in use)
        self.aside: dict[int, int] = {}  # its free blocks while protected: block -> offset
        self.protected = False


class _Block:
    __slots__ = ("offset", "session", "where")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.session: _Session | None = None
        self.where = USED


class SessionPolicy(EvictionPolicy):
    name = "session"

    def __init__(self, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None) -> None:
        super().__init__(capacity_blocks, block_tokens, config)
        from server.engine.prefix_cache.registry import create_policy  # the registry lists this module

        self.inner = create_policy(self.config.session_inner, capacity_blocks, block_tokens, self.config)
        self._sessions: dict[str, _Session] = {}
        self._protected: OrderedDict[str, _Session] = OrderedDict()  # in the order protection was granted
        self._by_use: OrderedDict[str, _Session] = (
            OrderedDict()
        )  # protected sessions, least recently used first
        self._protected_blocks = 0
        self._share_blocks = int(self.config.session_share * capacity_blocks)
        self._largest = 0  # the most blocks one session has owned: a request needs that many at once
        self._closed: OrderedDict[int, None] = OrderedDict()  # free blocks of closed sessions
        self._stale: OrderedDict[int, None] = OrderedDict()  # free blocks of sessions that idled
        self._aside_free = 0
        self._expiry: list[tuple[float, str]] = []
        self.mean_gap_s: float | None = None
        self.sessions_closed = 0
        self.sessions_expired = 0
        self.sessions_idled = 0
        self.evicted = dict.fromkeys(EVICTION_KINDS, 0)  # victims by the step of the order that chose them

    # -- events -------------------------------------------------------------------------------------------
    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        self.stats.blocks_inserted += 1
        session = self._note(meta, now, freed=False)
        self._blocks[block] = info = _Block(offset)
        self.inner.on_cached(block, offset, meta, now, content)
        if session is not None:
            self._own(block, info, session)

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self.stats.block_hits += 1
        session = self._note(meta, now, freed=False)
        info = self._use(block, meta, now)
        self.inner.on_hit(block, meta, now)
        if session is not None:
            self._own(block, info, session)

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        session = self._note(meta, now, freed=True)
        info = self._use(block, meta, now)
        if session is not None:
            self._own(block, info, session)
            if meta is not None and meta.session_final:
                self._close(session)
        owner = info.session
        if owner is not None and self._sessions.get(owner.key) is not owner:  # closed while in use
            self._place(block, info, CLOSED)
        elif owner is not None and owner.protected:
            self._place(block, info, ASIDE)
        else:
            info.where = INNER
            self.inner.on_freed(block, meta, now)

    def _forget(self, block: int, info: _Block) -> None:
        self._unplace(block, info)
        self.inner.on_dropped(block)
        self._disown(block, info)

    def _choose(self, n: int, now: float) -> list[int]:
        self._expire(now)
        self._idle(now)
        victims: list[int] = []
        evicted, counted = self.evicted, 0
        while self._closed and len(victims) < n:
            victims.append(self._closed.popitem(last=False)[0])
        evicted["closed"] += len(victims) - counted
        counted = len(victims)
        self._trim_over_budget(victims, n)
        evicted["over_budget"] += len(victims) - counted
        counted = len(victims)
        while self._stale and len(victims) < n:
            victims.append(self._stale.popitem(last=False)[0])
        evicted["stale"] += len(victims) - counted
        counted = len(victims)
        if len(victims) < n and len(self.inner):
            victims += self.inner.evict(min(n - len(victims), len(self.inner)), now)
        evicted["unprotected"] += len(victims) - counted
        evicted["protected"] += n - len(victims)
        while len(victims) < n:
            victims.append(self._pop_deepest(self._protected_victim()))
        for block in victims:
            self._disown(block, self._blocks[block])
        return victims

    def __len__(self) -> int:
        return len(self.inner) + len(self._closed) + len(self._stale) + self._aside_free

    def own_stats(self) -> dict[str, OwnStat]:
        """Live and protected sessions, the protected blocks and their budget, sessions ended by close,
        TTL or idling, and victims by the step of the eviction order; the inner policy's own figures too."""
        return {
            **self.inner.own_stats(),
            "session_live": len(self._sessions),
            "session_protected": len(self._protected),
            "session_protected_blocks": self._protected_blocks,
            "session_budget_blocks": self._budget,
            "session_mean_gap_s": round(self.mean_gap_s or 0.0, 3),
            "session_closed": self.sessions_closed,
            "session_expired": self.sessions_expired,
            "session_idled": self.sessions_idled,
            "session_evictions": dict(self.evicted),
        }

    def check_integrity(self) -> None:
        self.inner.check_integrity()
        counts = [0] * 5
        for block, info in self._blocks.items():
            counts[info.where] += 1
            assert (info.where in (USED, INNER)) == self.inner.knows(
                block
            ), f"session: inner and block {block}"
            if info.where == ASIDE:
                assert info.session is not None and block in info.session.aside, f"session: {block} not aside"
        assert counts[INNER] == len(self.inner), f"session: {counts[INNER]} free in inner, {len(self.inner)}"
        assert (counts[CLOSED], counts[STALE], counts[ASIDE]) == (
            len(self._closed),
            len(self._stale),
            self._aside_free,
        ), "session: side queues disagree with the blocks"
        protected = sum(len(s.blocks) for s in self._protected.values())
        assert (
            protected == self._protected_blocks
        ), f"session: {protected} protected != {self._protected_blocks}"
        assert set(self._protected) == set(self._by_use), "session: protected sets disagree"

    # -- which protected session gives up blocks (the extension point of ``session-due``) ------------------
    def _trim_over_budget(self, victims: list[int], n: int) -> None:
        """Step 2: while the protected sessions hold more than the budget, the most recently protected
        one's free blocks go, deepest first; with none free it loses its protection."""
        while len(victims) < n and self._protected and self._protected_blocks > self._budget:
            latest = next(reversed(self._protected.values()))
            if latest.aside:
                block = self._pop_deepest(latest)
                victims.append(block)
                self._disown(block, self._blocks[block])
            else:
                self._unprotect(latest, stale=False)

    def _protected_victim(self) -> _Session:
        """Step 5: the protected session whose free blocks go when nothing else is left."""
        return next(s for s in reversed(self._protected.values()) if s.aside)

    def _request_started(self, session: _Session) -> None:
        """A request of ``session`` started (its first, or the first after the previous one ended)."""

    def _touched(self, session: _Session) -> None:
        """A protected session got its first free block set aside (``session-due`` ranks it)."""

    def _admits(self, session: _Session) -> bool:
        """Whether a live, unprotected session becomes protected now (first come, first served)."""
        return len(session.blocks) + self._protected_blocks <= self._budget

    # -- sessions -----------------------------------------------------------------------------------------
    @property
    def _budget(self) -> int:
        """Blocks protected sessions may hold: ``session_share`` of the cache, and never so many that a
        request of the largest session seen could not get its blocks without evicting protected ones
        (vLLM needs a request's whole prompt in blocks at once)."""
        return max(0, min(self._share_blocks, self.capacity_blocks - self._largest - 1))

    def _note(self, meta: RequestMeta | None, now: float, freed: bool) -> _Session | None:
        """Apply what the request's metadata says (closes, TTL, activity); its live session, if any.
        ``freed``: the event is a block freed at the end of a request (the others start or run one)."""
        if meta is None:
            return None
        for key in meta.closed_sessions:
            closed = self._sessions.get(key)
            if closed is not None:
                self._close(closed)
        if meta.session is None:
            return None
        session = self._sessions.get(meta.session)
        if session is None:
            session = self._sessions[meta.session] = _Session(meta.session, now)
            self._request_started(session)
        elif session.between and not freed:  # a new request, after the previous one ended at ``last``
            gap = now - session.last
            self.mean_gap_s = (
                gap if self.mean_gap_s is None else self.mean_gap_s + 0.05 * (gap - self.mean_gap_s)
            )
            self._request_started(session)
        session.between = freed
        session.last = now
        if session.protected:
            self._by_use.move_to_end(session.key)
        if meta.session_ttl_s is not None and now + meta.session_ttl_s != session.expires:
            session.expires = now + meta.session_ttl_s
            heapq.heappush(self._expiry, (session.expires, session.key))
        return session

    def _own(self, block: int, info: _Block, session: _Session) -> None:
        if info.session is not session and self._sessions.get(session.key) is session:
            self._disown(block, info)
            info.session = session
            session.blocks.add(block)
            self._largest = max(self._largest, len(session.blocks))
            if session.protected:
                self._protected_blocks += 1
        if not session.protected and self._admits(session):
            self._protect(session)

    def _disown(self, block: int, info: _Block) -> None:
        session = info.session
        if session is None:
            return
        session.blocks.discard(block)
        if session.protected:
            self._protected_blocks -= 1
        info.session = None

    def _protect(self, session: _Session) -> None:
        session.protected = True
        self._protected[session.key] = self._by_use[session.key] = session
        self._protected_blocks += len(session.blocks)
        for block in session.blocks:
            info = self._blocks[block]
            if info.where in (INNER, STALE):  # a free block moves aside, out of the inner policy's reach
                self._unplace(block, info)
                self._place(block, info, ASIDE)

    def _unprotect(self, session: _Session, stale: bool) -> None:
        session.protected = False
        del self._protected[session.key], self._by_use[session.key]
        self._protected_blocks -= len(session.blocks)
        for block, _ in sorted(session.aside.items(), key=lambda item: -item[1]):  # deepest first
            info = self._blocks[block]
            self._unplace(block, info)
            if stale:
                self._place(block, info, STALE)
            else:
                info.where = INNER
                self.inner.on_cached(block, info.offset, _NO_META, session.last)
                self.inner.on_freed(block, None, session.last)

    def _close(self, session: _Session) -> None:
        if self._sessions.get(session.key) is not session:
            return
        del self._sessions[session.key]
        self.sessions_closed += 1
        if session.protected:
            self._unprotect(session, stale=True)
        for block in sorted(session.blocks, key=lambda b: -self._blocks[b].offset):
            info = self._blocks[block]
            if info.where in (INNER, STALE):
                self._unplace(block, info)
                self._place(block, info, CLOSED)

    def _expire(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            session = self._sessions.get(key)
            if session is not None and session.expires == expires:
                self.sessions_expired += 1
                self._close(session)

    def _idle(self, now: float) -> None:
        """Protected sessions idle for longer than ``_idle_limit`` lose protection, least recently used first."""
        limit = self._idle_limit()
        if limit is None:
            return
        while self._by_use:
            session = next(iter(self._by_use.values()))
            if self._idle_for(session, now) <= limit:
                return
            self.sessions_idled += 1
            self._unprotect(session, stale=True)

    def _idle_limit(self) -> float | None:
        """How long a protected session may idle: ``session_idle_factor`` x the mean gap, at least
        ``session_idle_min_s`` (None before any gap was measured)."""
        if self.mean_gap_s is None:
            return None
        return max(self.config.session_idle_min_s, self.config.session_idle_factor * self.mean_gap_s)

    def _idle_for(self, session: _Session, now: float) -> float:
        return now - session.last

    # -- where a block is ---------------------------------------------------------------------------------
    def _use(self, block: int, meta: RequestMeta | None, now: float) -> _Block:
        """The block's record, in use from now on (an unknown block is adopted)."""
        info = self._blocks.get(block)
        if info is None:
            info = self._blocks[block] = _Block(0)
            self.inner.on_cached(block, 0, meta or _NO_META, now)
        elif info.where not in (USED, INNER):
            self._unplace(block, info)
            self.inner.on_cached(block, info.offset, meta or _NO_META, now)
        info.where = USED
        return info

    def _place(self, block: int, info: _Block, where: int) -> None:
        """Put a free block (in use, or just unplaced) into a side queue, out of the inner policy."""
        if self.inner.knows(block):
            self.inner.on_dropped(block)
        info.where = where
        if where == CLOSED:
            self._closed[block] = None
        elif where == STALE:
            self._stale[block] = None
        else:
            assert info.session is not None
            info.session.aside[block] = info.offset
            self._aside_free += 1
            if len(info.session.aside) == 1:
                self._touched(info.session)

    def _unplace(self, block: int, info: _Block) -> None:
        """Take a block out of the side queue that holds it (nothing to do in use or in the inner)."""
        if info.where == CLOSED:
            del self._closed[block]
        elif info.where == STALE:
            del self._stale[block]
        elif info.where == ASIDE:
            assert info.session is not None
            del info.session.aside[block]
            self._aside_free -= 1
        info.where = USED

    def _pop_deepest(self, session: _Session) -> int:
        block = max(session.aside, key=session.aside.__getitem__)
        del session.aside[block]
        self._aside_free -= 1
        self._blocks[block].where = USED
        return block
