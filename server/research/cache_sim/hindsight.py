"""What a trace's future says about its reuse: the measurements behind bench/prefix_cache_limits.py.

- ``in_sample_histograms``: per category, the reuse-gap histograms ``density`` would measure if it saw
  every idle period and every reuse of the whole trace (perfect statistics, for
  ``DensityPolicy.use_fixed_histograms``). Categories follow the replay: a block's idle period belongs
  to the request that freed it, a prompt's partial last block to ``<category>/partial``.
- ``reuse_gaps``: every reuse gap (seconds from a block's use to its next use), one per block use.
- ``knapsack_fit``: the fractional-knapsack bound of a cache over a trace: the shortest gaps first,
  each costing one block for its gap, until ``capacity x trace duration`` block-seconds are spent.
- ``IdleAgeProbe``: wraps a policy and records how long each block it evicts had been idle.
"""

from __future__ import annotations

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.delegating import DelegatingPolicy
from server.engine.prefix_cache.policy import EvictionPolicy
from server.engine.prefix_cache.reuse_histogram import ReuseHistogram
from server.research.cache_sim.belady import NEVER, next_uses
from server.research.cache_sim.trace import Trace


def block_category(trace: Trace, i: int, j: int) -> str:
    """The category request i reports block j under in the replay (``sim/replay.py``'s partial rule)."""
    category = trace.metas[i].category
    last = len(trace.blocks[i]) - 1
    return f"{category}/partial" if j == last and trace.input_tokens[i] % trace.block_tokens else category


def in_sample_histograms(trace: Trace) -> dict[str, ReuseHistogram]:
    hists: dict[str, ReuseHistogram] = {}
    times = trace.times_s
    for i, upcoming in enumerate(next_uses(trace.blocks)):
        for j, nxt in enumerate(upcoming):
            category = block_category(trace, i, j)
            hist = hists.get(category)
            if hist is None:
                hist = hists[category] = ReuseHistogram()
            hist.start_period()
            if nxt != NEVER:
                hist.add_reuse(times[nxt] - times[i])
    return hists


def reuse_gaps(trace: Trace, skip_first_block: bool = True) -> list[float]:
    """Seconds from each block use to the next use of the same block, for uses that have one.
    ``skip_first_block`` leaves out offset 0 (on the Mooncake trace the system prompt every request
    shares, always resident in any cache)."""
    gaps = []
    times = trace.times_s
    for i, upcoming in enumerate(next_uses(trace.blocks)):
        for j, nxt in enumerate(upcoming):
            if nxt != NEVER and not (skip_first_block and j == 0):
                gaps.append(times[nxt] - times[i])
    return gaps


def knapsack_fit(gaps: list[float], capacity_blocks: int, duration_s: float) -> tuple[int, float]:
    """(how many of ``gaps`` fit, the longest one that fits) when each costs one block for its gap and
    the cache has ``capacity_blocks x duration_s`` block-seconds: an upper bound on the reuses any
    eviction order can keep (it ignores when each gap happens)."""
    budget = capacity_blocks * duration_s
    spent, count, longest = 0.0, 0, 0.0
    for gap in sorted(gaps):
        if spent + gap > budget:
            break
        spent += gap
        count += 1
        longest = gap
    return count, longest


class IdleAgeProbe(DelegatingPolicy):
    """Delegates every event to ``inner`` and records, per victim, seconds since it was last freed."""

    name = "idle-age-probe"  # replaced by the wrapped policy's name

    def __init__(self, inner: EvictionPolicy) -> None:
        super().__init__(inner)
        self.name = inner.name  # type: ignore[misc]
        self.ages: list[float] = []
        self._freed_at: dict[int, float] = {}

    def on_freed(self, block: int, meta: RequestMeta | None, now: float) -> None:
        self._freed_at[block] = now
        self.inner.on_freed(block, meta, now)

    def on_dropped(self, block: int) -> None:
        self._freed_at.pop(block, None)
        self.inner.on_dropped(block)

    def evict(self, n: int, now: float) -> list[int]:
        victims = self.inner.evict(n, now)
        self.ages.extend(now - self._freed_at.pop(b) for b in victims)
        return victims
