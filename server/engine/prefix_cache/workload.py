"""``workload``: the workload-aware policy of "KVCache Cache in the Wild" (Wang et al., USENIX ATC'25).

A free block's priority is (reuse probability, -offset in its prompt); the lowest is evicted first. The
reuse probability of a block of request category w, idle for t seconds, comes from an exponential
reuse model fitted online per category (``ReuseFit``): lambda_w from the category's recent reuse gaps,
counting reuses of content the cache had already evicted (ghost entries keyed by the block's content
hash; without them only gaps short enough to survive in the cache are seen), and the share of idle
periods that end in a reuse. ``life`` is the look-ahead window, a moving average of the idle time of
evicted blocks (how long a block can still wait in this cache).

Two probability models (``reuse_model``): ``workload-paper`` uses the paper's
``exp(-lambda_w t) * (1 - exp(-lambda_w * life))``; ``workload`` (the default) conditions it on the
block not having been reused yet and weights it by the category's reuse share (see
``ReuseFit.probability``); on the Mooncake trace that is what separates categories whose reuse share
differs more than their gaps (bench/results/prefix_cache/notes.md).

Within one category the probability falls with idle time, so one LRU queue per category holds the
order and an eviction compares only the queue heads: O(categories) per victim. vLLM frees a request's
blocks tail first, so within a queue equal idle times already come deepest offset first.

Pinned blocks (``RequestMeta.pin_ttl_s``, budget ``PolicyConfig.pin_share`` of the cache) wait in a
separate queue and are evicted only when no unpinned candidate is left; an expired pin returns its
block to the front of its category queue.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from client_edge.protocol.engine_xargs import DEFAULT_CATEGORY, RequestMeta
from server.engine.prefix_cache.pinning import PinSet
from server.engine.prefix_cache.policy import EvictionPolicy
from server.engine.prefix_cache.reuse_fit import ReuseFit, ReuseModel


class _Block:
    __slots__ = ("category", "offset", "last", "free", "content")

    def __init__(self, category: str, offset: int, last: float, content: int | None = None) -> None:
        self.category = category
        self.offset = offset
        self.last = last
        self.free = False
        self.content = content


class WorkloadPolicy(EvictionPolicy):
    name = "workload"
    reuse_model: ReuseModel = "conditional"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._queues: dict[str, OrderedDict[int, None]] = {}
        self._fits: dict[str, ReuseFit] = {}
        self._pinned_free: OrderedDict[int, None] = OrderedDict()
        self._pins = PinSet(int(self.config.pin_share * self.capacity_blocks))
        self._ghosts: OrderedDict[int, tuple[str, float]] = OrderedDict()  # content -> (category, last use)
        self._ghost_size = min(self.config.ghost_factor * self.capacity_blocks, self.config.ghost_max_entries)
        self._num_free = 0
        self.life_s = self.config.initial_life_s
        self._heads: dict[str, tuple[tuple[float, int], int]] | None = None  # per evict call
        self._picked: str | None = None

    # -- events -------------------------------------------------------------------------------------------
    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        self._blocks[block] = _Block(meta.category, offset, now, content)
        self.stats.blocks_inserted += 1
        ghost = self._ghosts.pop(content, None) if content is not None else None
        if ghost is not None:  # evicted content needed again: a reuse the cache missed
            self._fit(ghost[0]).add_reuse(now - ghost[1])
        self._pin(block, offset, meta, now)

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        info = self._blocks.get(block)
        if info is None:  # a pool that did not report the block as cached: adopt it
            info = self._blocks[block] = _Block(meta.category if meta else DEFAULT_CATEGORY, 0, now)
        self._fit(info.category).add_reuse(now - info.last)
        if info.free:
            self._unlink(block, info)
        info.last = now
        if meta is not None:
            info.category = meta.category
            self._pin(block, info.offset, meta, now)
        self.stats.block_hits += 1

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        info = self._blocks.get(block)
        if info is None:
            info = self._blocks[block] = _Block(meta.category if meta else DEFAULT_CATEGORY, 0, now)
        if info.free:
            self._unlink(block, info)
        info.last = now
        if meta is not None:
            info.category = meta.category
            self._pin(block, info.offset, meta, now)
        info.free = True
        self._num_free += 1
        self._fit(info.category).start_period()
        if self._pins.active(block, now):
            self._pinned_free[block] = None
        else:
            self._queue(info.category)[block] = None

    def _forget(self, block: int, info: _Block) -> None:
        if info.free:
            self._unlink(block, info)
        self._pins.unpin(block)

    def _choose(self, n: int, now: float) -> list[int]:
        self._release_expired_pins(now)
        victims = []
        params = self._params()  # the fits move little within one call: freeze them
        self._heads = None  # queue heads may have changed since the last call
        for _ in range(n):
            block = self._pick(now, params)
            self._retire(block, now)
            victims.append(block)
        return victims

    def evict_chosen(self, blocks: list[int], now: float) -> None:
        """Evict these free blocks, chosen by someone else (``guarded``'s LRU safety net), keeping the
        same statistics (ghost entries, look-ahead window) as for victims the policy picks itself."""
        for block in blocks:
            if not self._blocks[block].free:
                raise ValueError(f"{self.name}: block {block} is not free")
            self._retire(block, now)
            del self._blocks[block]
        self.stats.evictions += len(blocks)

    def _retire(self, block: int, now: float) -> None:
        """Unlink a victim, learn from its idle time and remember its content as a ghost."""
        info = self._blocks[block]
        self._unlink(block, info)
        self.life_s += self.config.life_smoothing * (max(now - info.last, 1e-3) - self.life_s)
        if info.content is not None and self._ghost_size:
            self._ghosts[info.content] = (info.category, info.last)
            if len(self._ghosts) > self._ghost_size:
                self._ghosts.popitem(last=False)
        self._pins.unpin(block)

    # -- queries ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._num_free

    def reuse_probability(self, category: str, idle_s: float) -> float:
        return self._fit(category).probability(idle_s, self.life_s, self.reuse_model)

    def check_integrity(self) -> None:
        queued = sum(len(q) for q in self._queues.values()) + len(self._pinned_free)
        assert queued == self._num_free, f"workload: {queued} queued != {self._num_free} free"
        for category, queue in self._queues.items():
            for block in queue:
                info = self._blocks[block]
                assert info.free and info.category == category, f"workload: block {block} misfiled"
        for block in self._pinned_free:
            assert self._blocks[block].free, f"workload: pinned block {block} not free"
        assert len(self._pins) <= self._pins.max_blocks, "workload: pin budget exceeded"

    # -- internals ----------------------------------------------------------------------------------------
    def _pick(self, now: float, params) -> int:
        """The free block with the lowest priority key: only queue heads compete (``_head``). Within one
        ``evict`` call only the previous victim's queue changes, so only its head is scored again."""
        heads = self._heads
        if heads is None:
            heads = self._heads = {c: self._head(c, q, now, params) for c, q in self._queues.items() if q}
        elif self._picked is not None:
            queue = self._queues[self._picked]
            if queue:
                heads[self._picked] = self._head(self._picked, queue, now, params)
            else:
                del heads[self._picked]
        if heads:
            self._picked = min(heads, key=lambda c: heads[c][0])
            return heads[self._picked][1]
        self._picked = None
        self.stats.pinned_evictions += 1
        return next(iter(self._pinned_free))

    def _head(
        self, category: str, queue: OrderedDict[int, None], now: float, params
    ) -> tuple[tuple[float, int], int]:
        """(reuse probability, -offset) of the category's longest-idle free block, and the block.
        ``params`` holds per category (reuse share, lambda, horizon term), frozen for one evict call."""
        block = next(iter(queue))
        info = self._blocks[block]
        rate, lam, horizon = params[category]
        decay = math.exp(-lam * (now - info.last))
        if self.reuse_model == "paper":
            p = decay * horizon
        else:
            x = rate * decay
            p = x / (x + 1.0 - rate) * horizon if rate < 1.0 else horizon
        return (p, -info.offset), block

    def _params(self) -> dict[str, tuple[float, float, float]]:
        params = {}
        for category in self._queues:
            fit = self._fit(category)
            lam = fit.lam
            params[category] = (fit.reuse_rate, lam, -math.expm1(-lam * self.life_s))
        return params

    def _unlink(self, block: int, info: _Block) -> None:
        """Take a free block out of whichever queue holds it."""
        if block in self._pinned_free:
            del self._pinned_free[block]
        else:
            del self._queues[info.category][block]
        info.free = False
        self._num_free -= 1

    def _queue(self, category: str) -> OrderedDict[int, None]:
        queue = self._queues.get(category)
        if queue is None:
            queue = self._queues[category] = OrderedDict()
        return queue

    def _fit(self, category: str) -> ReuseFit:
        fit = self._fits.get(category)
        if fit is None:
            fit = self._fits[category] = ReuseFit(self.config.reuse_window, self.config.initial_life_s)
        return fit

    def _pin(self, block: int, offset: int, meta: RequestMeta, now: float) -> None:
        if meta.pin_ttl_s is None:
            return
        until = meta.pin_until(offset, self.block_tokens, now)
        if until is not None and not self._pins.pin(block, until):
            self.stats.pins_refused += 1

    def _release_expired_pins(self, now: float) -> None:
        for block in self._pins.expired(now):
            if block in self._pinned_free:
                del self._pinned_free[block]
                info = self._blocks[block]
                queue = self._queue(info.category)
                queue[block] = None
                queue.move_to_end(block, last=False)


class WorkloadPaperPolicy(WorkloadPolicy):
    """``workload-paper``: the same policy with the paper's probability formula, unconditioned."""

    name = "workload-paper"
    reuse_model: ReuseModel = "paper"
