"""``DelegatingPolicy``: a policy that wraps another and forwards every event to it (``inner``).

Subclasses override the events they watch or steer (the simulator's idle-age probe, ``guarded``'s
LRU safety net) and share the inner policy's counters; the block bookkeeping stays the inner's.
"""

from __future__ import annotations

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy, OwnStat


class DelegatingPolicy(EvictionPolicy):
    name = "delegating"

    def __init__(self, inner: EvictionPolicy) -> None:
        super().__init__(inner.capacity_blocks, inner.block_tokens, inner.config)
        self.inner = inner
        self.stats = inner.stats

    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        self.inner.on_cached(block, offset, meta, now, content)

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self.inner.on_hit(block, meta, now)

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self.inner.on_freed(block, meta, now)

    def on_dropped(self, block: int) -> None:
        self.inner.on_dropped(block)

    def evict(self, n: int, now: float) -> list[int]:
        return self.inner.evict(n, now)  # the inner policy checks, counts and forgets

    def own_stats(self) -> dict[str, OwnStat]:
        return self.inner.own_stats()

    def knows(self, block: int) -> bool:
        return self.inner.knows(block)

    def num_cached(self) -> int:
        return self.inner.num_cached()

    def __len__(self) -> int:
        return len(self.inner)

    def check_integrity(self) -> None:
        self.inner.check_integrity()

    def _choose(self, n: int, now: float) -> list[int]:
        raise NotImplementedError(f"{self.name}: evict is delegated to the inner policy")

    def _forget(self, block: int, info: object) -> None:
        raise NotImplementedError(f"{self.name}: on_dropped is delegated to the inner policy")
