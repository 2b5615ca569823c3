"""``density``: evict the free block with the lowest expected hit density (LHD-like, on reuse gaps).

The same machinery as ``workload`` (one LRU queue per request category, ghost entries keyed by content
so reuses the cache missed are still observed, TTL pins bounded by ``PolicyConfig.pin_share``), with
another priority: the block's category's *hit density* at its idle age, reuses per block-second over a
look-ahead of ``PolicyConfig.density_horizon_s`` (``ReuseHistogram.table``), from the measured reuse-gap
histogram of the category instead of an exponential fit. Ties go to the deeper offset.

Only queue heads (each category's longest-idle free block) compete, so an eviction costs O(categories).
The density of a category is not always monotone in idle age (a conversation's next turn rarely comes
within seconds); comparing the youngest free block as well was measured and bought nothing on the
Mooncake trace (bench/results/prefix_cache/notes.md). The tables are rebuilt every
``PolicyConfig.density_refresh`` idle periods, and the counts then decay by ``density_decay``.
``use_fixed_histograms`` replaces the measured statistics by given ones (an offline bound: statistics
fitted on a whole trace in hindsight, bench/prefix_cache_limits.py); the ranking is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.engine.prefix_cache.reuse_histogram import ReuseHistogram, bucket
from server.engine.prefix_cache.workload import WorkloadPolicy


class DensityPolicy(WorkloadPolicy):
    name = "density"

    def __init__(self, *args, **kwargs) -> None:
        self._hists: dict[str, ReuseHistogram] = {}
        self._tables: dict[str, list[float]] = {}
        self._periods_since_refresh = 0
        self._fixed = False
        super().__init__(*args, **kwargs)

    def on_freed(self, block, meta, now) -> None:
        super().on_freed(block, meta, now)
        self._periods_since_refresh += 1
        if not self._fixed and self._periods_since_refresh >= self.config.density_refresh:
            self.refresh_tables()

    def use_fixed_histograms(self, histograms: Mapping[str, ReuseHistogram]) -> None:
        """Rank by tables built once from ``histograms`` (category -> reuse-gap histogram) from now on,
        and stop refreshing them from what the policy measures. For offline bounds only (statistics
        known in advance are not available to a server); a category missing here has no table, so its
        blocks are kept, as for a category not measured yet."""
        horizon = self.config.density_horizon_s
        self._tables = {c: h.table(horizon) for c, h in histograms.items()}
        self._fixed = True

    def refresh_tables(self) -> None:
        """Rebuild every category's density table from its histogram, then decay the counts."""
        horizon, decay = self.config.density_horizon_s, self.config.density_decay
        self._tables = {c: h.table(horizon) for c, h in self._hists.items()}
        for h in self._hists.values():
            h.decay(decay)
        self._periods_since_refresh = 0

    def density(self, category: str, idle_s: float) -> float | None:
        """The category's hit density at this idle age, or None before its first table."""
        table = self._tables.get(category)
        return None if table is None else table[bucket(idle_s)]

    def reuse_probability(self, category: str, idle_s: float) -> float:
        return self._fit(category).reuse_probability(idle_s, self.config.density_horizon_s)

    # -- WorkloadPolicy hooks -------------------------------------------------------------------------
    def _fit(self, category: str) -> ReuseHistogram:  # type: ignore[override]
        hist = self._hists.get(category)
        if hist is None:
            hist = self._hists[category] = ReuseHistogram()
        return hist

    def _params(self) -> dict[str, list[float]]:  # type: ignore[override]
        return self._tables

    def _head(self, category: str, queue, now: float, params) -> tuple[tuple[float, int], int]:
        """(hit density, -offset) of the category's longest-idle free block, and the block. A category
        without a table yet (too new to have been measured) is kept: it ranks above every measured one."""
        block = next(iter(queue))
        info = self._blocks[block]
        table = params.get(category)
        score = float("inf") if table is None else table[bucket(now - info.last)]
        return (score, -info.offset), block
