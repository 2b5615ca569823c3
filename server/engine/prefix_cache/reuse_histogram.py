"""Empirical reuse-gap distribution of one request category (the ``density`` policy's model).

Counts, per category, the idle periods its blocks start (one each time a block is freed) and the reuse
gaps that end them (seconds from a block's last use to its next, observed on cache hits and on evicted
content cached again), in log-spaced age buckets. From them, for a block idle ``a`` seconds:

    hit density(a) = P(reuse in (a, a + L]) / expected idle seconds spent in (a, a + L]

per idle period, i.e. reuses per block-second the cache would spend keeping the block for up to ``L``
more seconds (the least-hit-density idea of LHD, Beckmann et al., NSDI'18, on reuse gaps rather than on
the cache's own hit/eviction ages). Unlike an exponential fit it follows the real shape of the gaps:
conversation turns that never come back within seconds (the user reads and types) and a long tail.
The CDF is piecewise linear between bucket edges; counts decay by ``decay`` at each ``table`` call.
"""

from __future__ import annotations

import bisect

# Bucket edges in seconds: 0, then 2 s growing by 25 % per bucket up to ~10 h.
EDGES: tuple[float, ...] = (0.0, *(2.0 * 1.25**i for i in range(45)))


def bucket(age_s: float) -> int:
    """Index of the bucket holding ``age_s`` (ages past the last edge share the last bucket)."""
    return max(bisect.bisect_right(EDGES, age_s) - 1, 0)


class ReuseHistogram:
    def __init__(self) -> None:
        self.periods = 0.0
        self.reuses = [0.0] * len(EDGES)

    def start_period(self) -> None:
        self.periods += 1.0

    def add_reuse(self, gap_s: float) -> None:
        self.reuses[bucket(gap_s)] += 1.0

    def decay(self, factor: float) -> None:
        self.periods *= factor
        self.reuses = [r * factor for r in self.reuses]

    def table(self, horizon_s: float) -> list[float]:
        """Hit density at each bucket's lower edge for a look-ahead of ``horizon_s`` seconds."""
        cdf, integral = self._cdf_points()
        top = EDGES[-1] * 1.25

        def at(x: float) -> tuple[float, float]:  # (CDF(x), integral of the CDF over [0, x])
            if x >= top:
                return cdf[-1], integral[-1] + (x - top) * cdf[-1]
            i = bucket(x)
            lo, hi = EDGES[i], EDGES[i + 1] if i + 1 < len(EDGES) else top
            frac = (x - lo) / (hi - lo)
            c = cdf[i] + (cdf[i + 1] - cdf[i]) * frac
            return c, integral[i] + (x - lo) * (cdf[i] + c) / 2

        out = []
        for a in EDGES:
            c0, g0 = at(a)
            c1, g1 = at(a + horizon_s)
            idle = horizon_s - (g1 - g0)  # integral of the survival function 1 - CDF over the window
            out.append((c1 - c0) / idle if idle > 1e-12 else 0.0)
        return out

    def reuse_probability(self, idle_s: float, horizon_s: float) -> float:
        """P(reused within the next ``horizon_s`` s | not reused in the first ``idle_s`` s)."""
        cdf, _ = self._cdf_points()
        edges = (*EDGES, EDGES[-1] * 1.25)

        def at(x: float) -> float:
            if x >= edges[-1]:
                return cdf[-1]
            i = bucket(x)
            return cdf[i] + (cdf[i + 1] - cdf[i]) * (x - edges[i]) / (edges[i + 1] - edges[i])

        survive = 1.0 - at(idle_s)
        return (at(idle_s + horizon_s) - at(idle_s)) / survive if survive > 1e-12 else 0.0

    def _cdf_points(self) -> tuple[list[float], list[float]]:
        """CDF of the reuse gap at each edge (a gap in bucket i counts from edge i + 1 on; the CDF is
        linear in between) and the integral of the CDF from 0 to each edge."""
        periods = max(self.periods, sum(self.reuses), 1e-9)
        edges = (*EDGES, EDGES[-1] * 1.25)
        cdf, integral = [0.0], [0.0]
        for i, r in enumerate(self.reuses):
            cdf.append(cdf[-1] + r / periods)
            integral.append(integral[-1] + (edges[i + 1] - edges[i]) * (cdf[-2] + cdf[-1]) / 2)
        return cdf, integral
