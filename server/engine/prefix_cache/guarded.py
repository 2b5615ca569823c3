"""``guarded``: learned eviction with an LRU safety net (the recommended policy).

Four experts order the same free blocks: ``lru`` (vLLM's order), ``density`` (reuse-gap hit density
per request category), ``s3fifo`` (frequency: scan-resistant, good on Zipf-popular prefixes) and
``workload`` (the ATC'25 paper's per-category reuse probability; it wins on bursts of one-shot prompts,
where the others do not: bench/results/prefix_cache/notes.md). For
each expert the policy also keeps a shadow cache of the pool's size, fed with the pool's own block
accesses (every hit and every newly cached block, keyed by content) and evicting by that expert
alone, so it knows at any time how many hits each expert would have had. Per learned expert ``e`` a
decayed score, ``sum over accesses of decay^age x (shadow e hit - shadow lru hit)`` with
``decay = 1 - 1 / (guard_window x capacity)``, picks the expert that evicts in the real pool (follow
the leader with hysteresis): LRU leads from the start; an expert takes the lead once its score exceeds
a margin (``guard_margin`` x the window) and loses it when the score drops below zero, or when the
pool's own hits fall behind the LRU shadow's, lately by the margin or in all by more than
``guard_slack`` of the accesses so far (LRU leads again), or when another expert's score passes its own
by the margin; a learned expert takes the lead only while the pool has at least half that budget
left. Each lead lost doubles the margin, so the number of switches (and what switching costs) stays
bounded (about log2 of the trace's length), and on traffic where no learned expert beats LRU the pool
runs LRU.

What it guarantees, and what it does not: the real pool follows the expert whose shadow had the
most (decayed) hits; it is not that shadow (blocks in use cannot be evicted; a hit is a contiguous
prefix), and after a lead is lost the pool keeps the learned expert's contents for a while, so "never below
lru" is a budget on the shadow plus a transient, measured rather than proven (how far it held, and where
not, on short traces: bench/results/prefix_cache/notes.md), and
tests/server/research/cache_sim/test_guarded.py pins it on every generated workload at three
capacities. Only the leader's own rules apply (``density``'s and ``workload``'s pins only while they lead). The experts
not leading evict the leader's victims (``evict_chosen``) and keep learning. Cost: seven policy
instances, O(categories) per event.
"""

from __future__ import annotations

from client_edge.protocol.engine_xargs import DEFAULT_META, RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.density import DensityPolicy
from server.engine.prefix_cache.lru import LRUPolicy
from server.engine.prefix_cache.policy import EvictionPolicy, OwnStat
from server.engine.prefix_cache.s3fifo import S3FIFOPolicy
from server.engine.prefix_cache.workload import WorkloadPolicy

EXPERTS: dict[str, type[EvictionPolicy]] = {"density": DensityPolicy, "s3fifo": S3FIFOPolicy, "workload": WorkloadPolicy}


class GuardedPolicy(EvictionPolicy):
    name = "guarded"

    def __init__(self, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None) -> None:
        super().__init__(capacity_blocks, block_tokens, config)
        args = (capacity_blocks, block_tokens, self.config)
        self.lru = LRUPolicy(*args)
        self.experts: dict[str, EvictionPolicy] = {name: cls(*args) for name, cls in EXPERTS.items()}
        # Every shadow, lru's included, is a policy of its own: a prompt's blocks stay in use (unevictable)
        # until the next prompt, as in the pool; a bare LRU list that evicted the current prompt's own hits
        # undercounted lru and handed the pool to experts that were behind it.
        self._shadow_lru = LRUPolicy(*args)
        self._shadows: dict[str, EvictionPolicy] = {name: cls(*args) for name, cls in EXPERTS.items()}
        window = max(2.0, self.config.guard_window * capacity_blocks)
        self._decay = 1.0 - 1.0 / window
        self._margin = self.config.guard_margin * window
        self.scores = dict.fromkeys(EXPERTS, 0.0)
        self.shadow_hits = dict.fromkeys(("lru", *EXPERTS), 0)
        self.leader = "lru"
        self.switches = 0
        self.real_score = 0.0  # decayed (pool hit - shadow lru hit) since a learned expert took the lead
        self.real_total = 0  # pool hits - shadow lru hits, over all accesses
        self.accesses = 0
        self._chain = dict.fromkeys(("lru", *EXPERTS), False)
        self._pending: list[tuple[int, RequestMeta]] = []  # the current prompt's accesses

    def _all(self) -> list[EvictionPolicy]:
        return [self.lru, *self.experts.values()]

    # -- events -------------------------------------------------------------------------------------------
    def on_cached(
        self, block: int, offset: int, meta: RequestMeta, now: float, content: int | None = None
    ) -> None:
        for expert in self._all():
            expert.on_cached(block, offset, meta, now, content)
        self.stats.blocks_inserted += 1
        if content is not None:
            self._blocks[block] = (content, offset)
            self._access(content, offset, meta, now, real_hit=False)
        else:
            self._blocks[block] = None

    def on_hit(self, block: int, meta: RequestMeta | None, now: float) -> None:
        for expert in self._all():
            expert.on_hit(block, meta, now)
        self.stats.block_hits += 1
        where = self._blocks.setdefault(block, None)
        if where is not None:
            self._access(where[0], where[1], meta or DEFAULT_META, now, real_hit=True)

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._blocks.setdefault(block, None)
        for expert in self._all():
            expert.on_freed(block, meta, now)

    def _forget(self, block: int, info: object) -> None:
        for expert in self._all():
            expert.on_dropped(block)

    def _choose(self, n: int, now: float) -> list[int]:
        leader = self.lru if self.leader == "lru" else self.experts[self.leader]
        victims = leader.evict(n, now)
        for expert in self._all():
            if expert is not leader:
                expert.evict_chosen(victims, now)
        return victims

    def __len__(self) -> int:
        return len(self.lru)

    def own_stats(self) -> dict[str, OwnStat]:
        """Which expert leads, how often the lead changed, and how much of the loss budget (the pool's
        hits behind its lru shadow's, ``guard_slack`` x the accesses so far) is used."""
        budget = self.config.guard_slack * self.accesses
        behind = max(0, -self.real_total)
        return {
            "guard_leader": self.leader,
            "guard_switches": self.switches,
            "guard_accesses": self.accesses,
            "guard_shadow_hits": dict(self.shadow_hits),
            "guard_scores": {name: round(score, 3) for name, score in self.scores.items()},
            "guard_margin": round(self._margin, 3),
            "guard_pool_minus_lru_hits": self.real_total,
            "guard_loss_budget_used": round(behind / budget, 4) if budget else float(behind > 0),
        }

    def check_integrity(self) -> None:
        for expert in self._all():
            expert.check_integrity()
            assert len(expert) == len(
                self.lru
            ), f"guarded: {expert.name} has {len(expert)} free, lru {len(self.lru)}"
        assert self.lru.num_cached() == len(
            self._blocks
        ), "guarded: lru and guarded disagree on cached blocks"
        for shadow in (self._shadow_lru, *self._shadows.values()):
            assert shadow.num_cached() <= self.capacity_blocks, f"guarded: shadow {shadow.name} over capacity"

    # -- the shadow caches and the leader -----------------------------------------------------------------
    def _access(self, content: int, offset: int, meta: RequestMeta, now: float, real_hit: bool) -> None:
        """One block access, in prompt order. A shadow scores a hit only while the prompt's prefix has
        hit so far in that shadow (as the pool counts hits: the contiguous cached prefix). A prompt's
        blocks stay in use in the shadows until the next prompt starts (offset 0), then are freed tail
        first, as vLLM frees them."""
        chain, first = self._chain, offset == 0
        if first:
            self._flush(now)
        self._pending.append((content, meta))
        lru_hit = chain["lru"] = self._shadow_access(self._shadow_lru, content, offset, meta, now) and (
            first or chain["lru"]
        )
        self.shadow_hits["lru"] += lru_hit
        decay, scores = self._decay, self.scores
        self.real_score = self.real_score * decay + (real_hit - lru_hit)
        self.real_total += real_hit - lru_hit
        self.accesses += 1
        for name, policy in self._shadows.items():
            hit = chain[name] = self._shadow_access(policy, content, offset, meta, now) and (
                first or chain[name]
            )
            self.shadow_hits[name] += hit
            scores[name] = scores[name] * decay + (hit - lru_hit)
        self._elect()

    def _shadow_access(
        self, shadow: EvictionPolicy, content: int, offset: int, meta: RequestMeta, now: float
    ) -> bool:
        """One access in one shadow: a hit, or the content is cached, evicting a free block if the shadow is
        full (with every block in use, it does not fit, as in the pool). True on a hit."""
        if shadow.knows(content):
            shadow.on_hit(content, meta, now)
            return True
        if shadow.num_cached() < self.capacity_blocks or len(shadow):
            if shadow.num_cached() >= self.capacity_blocks:
                shadow.evict(1, now)
            shadow.on_cached(content, offset, meta, now, content)
        return False

    def _flush(self, now: float) -> None:
        """Free the previous prompt's blocks in the shadows, tail first."""
        shadows = (self._shadow_lru, *self._shadows.values())
        for content, meta in reversed(self._pending):
            for shadow in shadows:
                if shadow.knows(content):
                    shadow.on_freed(content, meta, now)
        self._pending.clear()

    def _elect(self) -> None:
        scores, margin = self.scores, self._margin
        best = max(scores, key=scores.__getitem__)
        budget = self.config.guard_slack * self.accesses  # the hits the pool may have lost to lru so far
        if self.leader == "lru":
            if scores[best] > margin and self.real_total > -budget / 2:
                self.leader = best
                self.switches += 1
                self.real_score = 0.0
        elif scores[self.leader] < 0.0 or self.real_score < -margin or self.real_total < -budget:
            # its shadow fell behind lru's, or the pool itself did (lately, or in all): lru leads again
            self.leader = "lru"
            self._lost_lead()
        elif best != self.leader and scores[best] > scores[self.leader] + margin:
            self.leader = best
            self.real_score = 0.0
            self._lost_lead()

    def _lost_lead(self) -> None:
        self.switches += 1
        self._margin *= 2.0
