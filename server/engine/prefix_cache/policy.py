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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.stats import PolicyStats


class EvictionPolicy(ABC):
    """Base class for eviction policies. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None) -> None:
        if capacity_blocks <= 0:
            raise ValueError(f"capacity_blocks must be a positive integer, got {capacity_blocks}")
        if block_tokens <= 0:
            raise ValueError(f"block_tokens must be a positive integer, got {block_tokens}")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self.config = config or PolicyConfig()
        self.stats = PolicyStats(policy=self.name)

    @abstractmethod
    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None: ...

    @abstractmethod
    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None: ...

    @abstractmethod
    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None: ...

    @abstractmethod
    def on_dropped(self, block: int) -> None: ...

    @abstractmethod
    def evict(self, n: int, now: float) -> list[int]: ...

    @abstractmethod
    def knows(self, block: int) -> bool:
        """True when the block is cached as far as the policy knows (free or in use)."""

    @abstractmethod
    def num_cached(self) -> int:
        """Blocks cached as far as the policy knows, free or in use."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def check_integrity(self) -> None: ...

    def _check_evict_request(self, n: int) -> None:
        if n < 0 or n > len(self):
            raise ValueError(f"{self.name}: cannot evict {n} blocks, {len(self)} candidates")
