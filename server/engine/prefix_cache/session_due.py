"""``session-due``: ``session`` that gives up the live session due last instead of the latest protected.

``session`` protects sessions first come, first served, within its budget; the others compete under the
inner policy. When live sessions take turns (K sessions escalating in rotation, their contexts together
more than the cache) the unprotected ones then evict each other before they return, like LRU. What the
offline optimum does instead is keep the sessions due next: here every live session is protected, and
when blocks must go (over the budget, or nothing else left) they come from the protected session whose
next request is predicted furthest away, deepest blocks first. The clock is the count of session requests
started, not seconds (on a real engine a request served from the cache takes a tenth of the time of one
that is not, so gaps in seconds misrank a rotation: the first engine run did, 377 tokens per escalation
against 330 simulated): a session is predicted at the request it last started plus its own mean gap in
requests (the mean over all sessions until it has one). In a rotation that is the session that just ran,
the classic remedy for a cyclic pattern larger than the cache. Everything else is ``session``'s:
closed sessions' blocks first, the share of the cache sessions may hold, idle sessions losing protection
(their blocks go before any unsessioned block; idle is counted in the same clock), the inner policy for
blocks of no session.

Ranking: a heap of (predicted next use, session), refreshed lazily: an entry is re-pushed when its
session's prediction moved, dropped when the session is gone, unprotected or has no free block (it is
pushed again when it gets one). Per victim O(log sessions) amortised.
"""

from __future__ import annotations

import heapq
import itertools

from server.engine.prefix_cache.session import SessionPolicy, _Session


class SessionDuePolicy(SessionPolicy):
    name = "session-due"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (SessionPolicy's signature)
        super().__init__(*args, **kwargs)
        self._due: list[tuple[float, int, _Session]] = []  # (-predicted next use, tie-break, session)
        self._tie = itertools.count()
        self._ranked: dict[_Session, float] = {}  # the prediction each session was last pushed with
        self.session_requests = 0  # session requests started so far: this policy's clock
        self.mean_turn_gap: float | None = None  # mean gap between a session's requests, in that clock

    def _predicted(self, session: _Session) -> float:
        gap = session.turn_gap if session.turn_gap is not None else self.mean_turn_gap
        return session.turn + (gap or 0.0)

    def _admits(self, session: _Session) -> bool:
        return True  # every live session is protected; the budget is kept by giving up the one due last

    def _request_started(self, session: _Session) -> None:
        self.session_requests += 1
        if session.turn:  # not its first request: a gap
            turns = self.session_requests - session.turn
            session.turn_gap = turns if session.turn_gap is None else session.turn_gap + 0.3 * (turns - session.turn_gap)
            self.mean_turn_gap = (
                turns if self.mean_turn_gap is None else self.mean_turn_gap + 0.05 * (turns - self.mean_turn_gap)
            )
        session.turn = self.session_requests
        if session.protected:
            self._touched(session)  # its prediction moved

    def _touched(self, session: _Session) -> None:
        due = self._predicted(session)
        if self._ranked.get(session) != due:  # one live entry per prediction
            self._ranked[session] = due
            heapq.heappush(self._due, (-due, next(self._tie), session))

    def _due_last(self) -> _Session | None:
        """The protected session with free blocks whose next request is predicted furthest away."""
        heap = self._due
        while heap:
            neg, _, session = heap[0]
            current = self._sessions.get(session.key) is session
            if not current or not session.protected or not session.aside:
                heapq.heappop(heap)  # gone, or nothing to give: pushed again when it gets a free block
                if not current or self._ranked.get(session) == -neg:
                    self._ranked.pop(session, None)
                continue
            due = self._predicted(session)
            if -neg != due:  # stale (a later entry holds its prediction), or the mean it used moved: re-rank
                heapq.heappop(heap)
                if self._ranked.get(session) in (-neg, None):
                    self._ranked[session] = due
                    heapq.heappush(heap, (-due, next(self._tie), session))
                continue
            return session
        return None

    def _idle_limit(self) -> float | None:
        """Idle in the same clock: ``session_idle_factor`` x the mean gap in session requests (in seconds, a
        rotation's sessions idled while the new ones of a phase were being created, and their blocks went
        before those of sessions due later)."""
        return None if self.mean_turn_gap is None else self.config.session_idle_factor * self.mean_turn_gap

    def _idle_for(self, session: _Session, now: float) -> float:
        return self.session_requests - session.turn

    def _trim_over_budget(self, victims: list[int], n: int) -> None:
        while len(victims) < n and self._protected_blocks > self._budget:
            session = self._due_last()
            if session is None:  # the protected blocks over the budget are all in use
                return
            block = self._pop_deepest(session)
            victims.append(block)
            self._disown(block, self._blocks[block])

    def _protected_victim(self) -> _Session:
        session = self._due_last()
        assert session is not None, "session-due: asked for a protected victim with none free"
        return session
