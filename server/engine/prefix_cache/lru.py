"""``lru``: vLLM's own order. Candidates are evicted in the order they were freed; vLLM frees a request's
blocks tail first, so within one request the longest prefix goes first. A hit takes a block out."""

from __future__ import annotations

from collections import OrderedDict

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy


class LRUPolicy(EvictionPolicy):
    name = "lru"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._free: OrderedDict[int, None] = OrderedDict()

    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        self._blocks[block] = None
        self.stats.blocks_inserted += 1

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._free.pop(block, None)
        self._blocks[block] = None
        self.stats.block_hits += 1

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._blocks[block] = None
        self._free[block] = None
        self._free.move_to_end(block)

    def _forget(self, block: int, info: None) -> None:
        self._free.pop(block, None)

    def _choose(self, n: int, now: float) -> list[int]:
        popitem = self._free.popitem
        return [popitem(last=False)[0] for _ in range(n)]

    def __len__(self) -> int:
        return len(self._free)

    def check_integrity(self) -> None:
        stray = [b for b in self._free if b not in self._blocks]
        assert not stray, f"lru: free blocks not known as cached: {stray[:10]}"
