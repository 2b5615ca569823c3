"""``belady``: Belady's MIN, the offline optimum the simulator reports as the upper bound.

It evicts the free block whose next use lies furthest in the future (never again first); ties go to
the deeper block of the prompt. It needs the future, so only the simulator builds it: before a
request's blocks are freed the simulator tells the policy, through ``set_next_use``, the index of the
next request that uses each block. A max-heap with lazy deletion gives O(log n) per event.

Optimal in block hits (checked against every eviction sequence on small traces:
tests/server/research/cache_sim/test_belady_brute_force.py). In token hits it is optimal only while every reused
block is whole: a reused partial last block is worth fewer tokens, and weighting by it is a weighted-caching
problem MIN does not solve (e.g. blocks [[0],[1],[2,3],[0],[1,4],[2],[0]], input tokens [1,3,7,2,7,2,3], 4-token
blocks, capacity 3: 4 tokens against an optimum of 7). Where a trace reuses partial last blocks,
the "upper bound" in tokens is Belady's, not a proven token optimum.
"""

from __future__ import annotations

import heapq

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy

NEVER = 1 << 62


def next_uses(blocks: list[list[int]]) -> list[list[int]]:
    """For request i and its block j: the index of the next request using that block (NEVER if none)."""
    upcoming: dict[int, int] = {}
    out: list[list[int]] = [[] for _ in blocks]
    for i in range(len(blocks) - 1, -1, -1):
        keys = blocks[i]
        out[i] = [upcoming.get(k, NEVER) for k in keys]
        for k in keys:
            upcoming[k] = i
    return out


class BeladyPolicy(EvictionPolicy):
    name = "belady"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._next: dict[int, int] = {}
        self._free: dict[int, int] = {}  # free block -> version of its heap entry
        self._heap: list[tuple[int, int, int, int]] = []  # (-next use, -offset, version, block)
        self._version = 0

    def set_next_use(self, block: int, request_index: int) -> None:
        self._next[block] = request_index

    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        self._blocks[block] = offset
        self.stats.blocks_inserted += 1

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._free.pop(block, None)
        self.stats.block_hits += 1

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._version += 1
        self._free[block] = self._version
        offset = self._blocks.setdefault(block, 0)
        heapq.heappush(self._heap, (-self._next.get(block, NEVER), -offset, self._version, block))

    def _forget(self, block: int, info: int) -> None:
        self._free.pop(block, None)
        self._next.pop(block, None)

    def _choose(self, n: int, now: float) -> list[int]:
        victims = []
        heap, free = self._heap, self._free
        while len(victims) < n:
            _, _, version, block = heapq.heappop(heap)
            if free.get(block) == version:
                del free[block]
                self._next.pop(block, None)
                victims.append(block)
        return victims

    def __len__(self) -> int:
        return len(self._free)

    def check_integrity(self) -> None:
        live = sum(1 for _, _, v, b in self._heap if self._free.get(b) == v)
        assert live == len(self._free), f"belady: {live} live heap entries, {len(self._free)} free"
