"""The eviction-policy contract: the one extension point of the prefix cache.

A policy sees cached KV blocks by integer id (vLLM's ``KVCacheBlock.block_id``, or the simulator's block
key) and decides which *free* cached block is evicted next. The block pool (vLLM's or the simulator's)
owns the blocks; the policy owns only the order. Events, all O(1) or O(log n) per block:

- ``on_cached(block, offset, meta, now, content)``: the block's content became reusable (it holds
  prefix block ``offset`` of a request with metadata ``meta``). The block is in use (not evictable).
  ``content`` is a stable hash of what the block holds, when the pool knows one (policies that keep a
  history of evicted content, like S3-FIFO's ghost queue, use it).
- ``on_hit(block, meta, now)``: a request with ``meta`` reuses the cached block. If it was free it is
  no longer evictable.
- ``on_freed(block, meta, now)``: the last request using the block (with ``meta``) released it; it
  becomes an eviction candidate. ``meta`` may be None when the pool does not know the request.
- ``on_dropped(block)``: the pool dropped the block's content on its own (e.g. a cache reset); the
  policy forgets it. Unknown blocks are ignored.
- ``evict(n, now)``: remove and return exactly ``n`` candidates, first victim first. The pool only asks
  when it holds at least ``n`` candidates; pinned blocks go last, never refused.
- ``check_integrity()``: raise ``AssertionError`` when the internal structures disagree.

``len(policy)`` is the number of eviction candidates; ``knows(block)`` says whether a block is cached.
``block_tokens`` (tokens per block) converts a request's pinned token count into blocks.
``own_stats()``: the policy's own figures beyond the shared ``PolicyStats`` (which expert leads, how
many sessions are protected...), for the engine's stats marker and the router's ``/metrics``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeAlias

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.stats import PolicyStats

#: ``own_stats`` values: a number, a name (e.g. the leading expert), or numbers by name (e.g. per expert).
OwnStat: TypeAlias = float | int | str | dict[str, float | int]


class EvictionPolicy(ABC):
    """Base class for eviction policies. Subclasses set ``name`` and implement the abstract methods.

    The base class keeps what every policy needs the same way: ``_blocks`` (every cached block the
    policy knows, mapped to the subclass's per-block record, or None), hence ``knows`` and ``num_cached``;
    the eviction epilogue (``evict`` checks the request, asks ``_choose`` for the victims, forgets them
    and counts them); and ``on_dropped`` (forgets the block, then ``_forget`` unlinks a free one)."""

    name: ClassVar[str]

    def __init__(self, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None) -> None:
        if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int) or capacity_blocks <= 0:
            raise ValueError(f"capacity_blocks must be a positive integer, got {capacity_blocks}")
        if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens <= 0:
            raise ValueError(f"block_tokens must be a positive integer, got {block_tokens}")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.config = config or PolicyConfig()
        self.stats = PolicyStats(policy=self.name)
        self._blocks: dict[int, Any] = {}

    @abstractmethod
    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None: ...

    @abstractmethod
    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None: ...

    @abstractmethod
    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def check_integrity(self) -> None: ...

    @abstractmethod
    def _choose(self, n: int, now: float) -> list[int]:
        """Pick ``n`` distinct free blocks (first victim first) and unlink them from the policy's own
        candidate structures; ``evict`` then forgets them. Called only with 0 <= n <= len(self)."""

    @abstractmethod
    def _forget(self, block: int, info: Any) -> None:
        """``block`` (record ``info``) was dropped by the pool; unlink it if it is a candidate."""

    def on_dropped(self, block: int) -> None:
        if block in self._blocks:
            self._forget(block, self._blocks.pop(block))

    def evict(self, n: int, now: float) -> list[int]:
        """Remove and return exactly ``n`` candidates, first victim first."""
        self._check_evict_request(n)
        victims = self._choose(n, now)
        blocks = self._blocks
        for block in victims:
            del blocks[block]
        self.stats.evictions += n
        return victims

    def evict_chosen(self, blocks: list[int], now: float) -> None:
        """Evict these free blocks, chosen by someone else (``guarded`` steers its experts this way):
        forget them as ``on_dropped`` does and count them as evictions."""
        for block in blocks:
            info = self._blocks.pop(block)
            self._forget(block, info)
        self.stats.evictions += len(blocks)

    def own_stats(self) -> dict[str, OwnStat]:
        """The policy's own counters and gauges, JSON-able, keys prefixed by the policy's family (the
        router's collector exports the keys it documents, ``router/prefix_cache_metrics.py``). None by
        default."""
        return {}

    def knows(self, block: int) -> bool:
        """True when the block is cached as far as the policy knows (free or in use)."""
        return block in self._blocks

    def num_cached(self) -> int:
        """Blocks cached as far as the policy knows, free or in use."""
        return len(self._blocks)

    def _check_evict_request(self, n: int) -> None:
        if n < 0 or n > len(self):
            raise ValueError(f"{self.name}: cannot evict {n} blocks, {len(self)} candidates")
