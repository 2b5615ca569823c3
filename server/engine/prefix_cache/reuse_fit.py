"""Online fit of a category's reuse behaviour (the ``workload`` policy's model)."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

ReuseModel = Literal["paper", "conditional"]


class ReuseFit:
    """Exponential reuse model of one request category over a sliding window of ``window`` events.

    ``lam`` = 1 / mean of the recent reuse gaps (seconds from a block's last access to its next use).
    The policy reports a reuse both when a cached block is hit and when content the cache evicted is
    cached again (a ghost entry): fitting on hits alone would see only the gaps short enough to survive
    in the cache and make every category the cache evicts look hopeless. ``reuse_rate`` = reuses per
    idle period (a block starts one each time it is freed), with a prior of 1 reuse in 2 periods.
    """

    def __init__(self, window: int, prior_gap_s: float) -> None:
        self._gaps: deque[float] = deque(maxlen=window)
        self._gap_sum = 0.0
        self._prior_gap = prior_gap_s
        self._events: deque[int] = deque(maxlen=window)  # 0: an idle period started, 1: a reuse
        self._reuses = 0

    def start_period(self) -> None:
        self._push_event(0)

    def add_reuse(self, gap_s: float) -> None:
        gaps = self._gaps
        if len(gaps) == gaps.maxlen:
            self._gap_sum -= gaps[0]
        gap = max(gap_s, 1e-3)
        gaps.append(gap)
        self._gap_sum += gap
        self._push_event(1)

    def _push_event(self, reuse: int) -> None:
        events = self._events
        if len(events) == events.maxlen:
            self._reuses -= events[0]
        events.append(reuse)
        self._reuses += reuse

    @property
    def lam(self) -> float:
        n = len(self._gaps)
        return n / self._gap_sum if n else 1.0 / self._prior_gap

    @property
    def reuse_rate(self) -> float:
        starts = len(self._events) - self._reuses
        return min(1.0, (self._reuses + 1) / (starts + 2))

    def probability(self, idle_s: float, life_s: float, model: ReuseModel) -> float:
        """Chance that a block idle for ``idle_s`` is reused within the next ``life_s`` seconds.

        ``paper``: exp(-lam * idle) * (1 - exp(-lam * life)), the formula of the ATC'25 paper.
        ``conditional``: the same horizon term for a block that is reused at all with probability
        ``reuse_rate`` and has not been by now: x / (x + 1 - reuse_rate) * (1 - exp(-lam * life)) with
        x = reuse_rate * exp(-lam * idle). Both fall with idle time, so LRU order within a category holds.
        """
        lam = self.lam
        horizon = -math.expm1(-lam * life_s)
        decay = math.exp(-lam * idle_s)
        if model == "paper":
            return decay * horizon
        x = self.reuse_rate * decay
        return x / (x + 1.0 - self.reuse_rate) * horizon if self.reuse_rate < 1.0 else horizon
