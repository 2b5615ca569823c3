"""``s3fifo``: S3-FIFO (Yang et al., SOSP'23) over free cached blocks.

New content enters a small probationary FIFO (``PolicyConfig.s3fifo_small_share`` of the cache); content
that was evicted from it recently (the ghost FIFO, keyed by content hash) re-enters the main FIFO
directly. A small-queue block that was hit while there moves to main instead of being evicted; a main
block with a non-zero frequency (hits, capped at 3) is reinserted with its frequency decremented. Blocks
in use are outside both queues; a freed block goes back to the tail of the queue it belongs to. The
amortised cost per eviction is O(1).
"""

from __future__ import annotations

from collections import OrderedDict

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy

_MAX_FREQ = 3


class _Block:
    __slots__ = ("freq", "main", "free", "content")

    def __init__(self, main: bool, content: int | None) -> None:
        self.freq = 0
        self.main = main
        self.free = False
        self.content = content


class S3FIFOPolicy(EvictionPolicy):
    name = "s3fifo"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._small: OrderedDict[int, None] = OrderedDict()
        self._main: OrderedDict[int, None] = OrderedDict()
        self._ghost: OrderedDict[int, None] = OrderedDict()
        self._small_target = max(1, int(self.config.s3fifo_small_share * self.capacity_blocks))
        self._ghost_size = max(1, self.capacity_blocks - self._small_target)

    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        seen = content is not None and self._ghost.pop(content, 0) is None
        self._blocks[block] = _Block(main=seen, content=content)
        self.stats.blocks_inserted += 1

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        info = self._blocks.get(block)
        if info is None:
            info = self._blocks[block] = _Block(main=False, content=None)
        if info.free:
            self._unlink(block, info)
        info.freq = min(info.freq + 1, _MAX_FREQ)
        self.stats.block_hits += 1

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        info = self._blocks.get(block)
        if info is None:
            info = self._blocks[block] = _Block(main=False, content=None)
        if info.free:
            self._unlink(block, info)
        info.free = True
        (self._main if info.main else self._small)[block] = None

    def _forget(self, block: int, info: _Block) -> None:
        if info.free:
            self._unlink(block, info)

    def _choose(self, n: int, now: float) -> list[int]:
        return [self._evict_one() for _ in range(n)]

    def evict_chosen(self, blocks: list[int], now: float) -> None:
        """Victims chosen elsewhere: those still on probation are remembered in the ghost FIFO."""
        for block in blocks:
            info = self._blocks.get(block)
            if info is not None and not info.main and info.content is not None:
                self._remember(info.content)
        super().evict_chosen(blocks, now)

    def _remember(self, content: int) -> None:
        self._ghost[content] = None
        if len(self._ghost) > self._ghost_size:
            self._ghost.popitem(last=False)

    def __len__(self) -> int:
        return len(self._small) + len(self._main)

    def check_integrity(self) -> None:
        for queue, main in ((self._small, False), (self._main, True)):
            for block in queue:
                info = self._blocks[block]
                assert info.free and info.main == main, f"s3fifo: block {block} misfiled"
        free = sum(1 for info in self._blocks.values() if info.free)
        assert free == len(self), f"s3fifo: {free} free blocks, {len(self)} queued"
        assert len(self._ghost) <= self._ghost_size, "s3fifo: ghost over its size"

    def _evict_one(self) -> int:
        small, main, blocks = self._small, self._main, self._blocks
        while True:
            if small and (len(small) >= self._small_target or not main):
                block, _ = small.popitem(last=False)
                info = blocks[block]
                if info.freq > 0:
                    info.main, info.freq = True, 0
                    main[block] = None
                    continue
                if info.content is not None:
                    self._remember(info.content)
            else:
                block, _ = main.popitem(last=False)
                info = blocks[block]
                if info.freq > 0:
                    info.freq -= 1
                    main[block] = None
                    continue
            info.free = False
            return block

    def _unlink(self, block: int, info: _Block) -> None:
        del (self._main if info.main else self._small)[block]
        info.free = False
