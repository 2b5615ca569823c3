"""One attention layer's choices from what it has seen, per context length (CUDA adapter, pure Python,
unit-tested on CPU). Each vLLM attention layer has its own impl, so each impl holds one gate.

Attention gets sparser as the context grows, and a layer's cost of estimating is mostly fixed, so everything the
gate remembers is kept per **length bucket** (:func:`length_bucket`: half an octave of context, e.g.
23,171-32,767 tokens): a 128K prompt's estimate says nothing about the next 32K one.

The estimate is what decides a row; these rules only save its cost where the layer's history makes the answer
near certain:

- **timed paths** (``time_paths``; by default on with the Triton sparse kernel, off with fa3:
  ``attention_backend.vllm.cuda_startup.resolve_time_paths``): the step's attention in this layer is timed on the GPU (CUDA
  events, read a call or more later without a sync: :class:`attention_backend.path_clock.PathClock`) both ways:
  ``dense`` (vLLM's FlashAttention with no estimate) and ``xattn`` (estimate, decide, attend), in time per unit
  of dense work (the step's causal (query, key) pairs). Once each has run twice in a bucket and been timed, the
  layer runs the cheaper there (a path's cost: the median of its latest three timings, the smallest while it
  has fewer, so a first call's set-up or a host stall never decides alone) and re-times the other on every
  ``retime_every``-th call (staggered across layers; 4x rarer when one path costs 1.5x the other or more, since
  a re-time costs the gap), so a layer whose sparse path stops paying runs dense, host syncs and estimate
  included in what was measured. This
  is what keeps XAttention from being slower than dense where the density is near the break-even or the
  estimate is a large share of a short layer (bench/results/xattn_real/notes.md: SmolLM2-135M at 32K was
  0.83x FA3 with density rules alone). Before both are timed, the density rules below decide, except that
  the second call in a bucket runs dense to time it (and the next ones each path once more).
- ``probe``: the cheap probe on the last query blocks pays only where a row may end up dense, so it is
  skipped while the latest estimated density is under ``probe_below`` x the break-even (the full estimate
  still decides).
- ``on_device``: while the latest estimated density is under ``device_below`` x the break-even, the rows are
  decided on the device (no host sync): every row is still estimated and runs dense when its own estimate is
  above the break-even, but the host does not wait for the counts, so the GPU never idles between the
  estimate and the attention (``attention_backend.vllm.cuda``, "decided on the device"). Nearer the
  break-even, or before the layer's first estimate, the host reads the counts (and the probe may save the
  estimate of a row that goes dense).
- ``skip_estimate``: while the latest estimated density is at least ``dense_margin`` x the break-even, the
  layer runs vLLM's dense kernel with no estimate at all, except on every ``reprobe_every``-th call, which
  estimates (and decides) again, so a layer whose attention drops under the margin returns to per-row
  decisions within that many calls. Measured why (NVIDIA H100, 2026-12-05,
  bench/results/xattn_real/notes.md): Gemma-3-270M's global layers 5 and 11 sat at estimated density
  0.49-0.71 against its d 256 break-even of 0.25; 91 % of its row-layers ran dense after the estimate, and
  TTFT was 0.92-0.98x FA3's at 8K-128K (the estimates' cost, nothing gained).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from attention_backend.config import XAttentionConfig

DENSE, XATTN = "dense", "xattn"


def length_bucket(k_len: int) -> int:
    """Half-octave bucket of a context of ``k_len`` tokens: ``floor(2 log2 k_len)`` (``k_len >= 1``)."""
    return math.floor(2 * math.log2(max(1, k_len)))


def bucket_tokens(bucket: int) -> int:
    """The shortest context of ``bucket`` (its lower edge in tokens), for logs and the stats marker."""
    return math.ceil(2 ** (bucket / 2))


@dataclass
class _Bucket:
    """What one layer saw at one context length."""

    density: float | None = None  # the latest estimate
    skipped: int = 0  # calls since the density went over the margin
    calls: int = 0  # calls through :meth:`LayerGate.path`
    runs: dict[str, int] = field(default_factory=lambda: {DENSE: 0, XATTN: 0})  # started, timed or not
    samples: dict[str, deque[float]] = field(default_factory=dict)  # path -> its latest ms per unit of work

    def cost(self, path: str) -> float:
        """The path's cost: the median of its latest three timings, the smallest while it has fewer (a
        timing can only be too high: a first call's set-up, a host stall; one such never decides alone)."""
        xs = self.samples[path]
        return statistics.median(xs) if len(xs) >= 3 else min(xs)


@dataclass
class LayerGate:
    """Remembers, per length bucket, the layer's latest estimated density (:meth:`observe`) and the measured
    cost of both paths (:meth:`record`), and answers which path runs (:meth:`path`) and the density shortcuts."""

    dense_above: float  # the break-even density: a row above it runs dense
    dense_margin: float = XAttentionConfig.dense_margin
    reprobe_every: int = 16
    probe_below: float = 0.5
    device_below: float = 0.8
    time_paths: bool = True
    retime_every: int = 16
    first_runs: int = 2  # each path runs this often in a bucket before the timings decide
    far_apart: float = 1.5  # paths this far apart in cost (slower / faster) are re-timed ...
    far_apart_factor: int = 4  # ... this many times less often (a re-time costs the gap)
    layer: int = 0  # staggers the re-timing calls across layers
    _buckets: dict[int, _Bucket] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if (
            self.dense_margin < 1.0
            or self.reprobe_every < 1
            or self.retime_every < 2
            or self.far_apart < 1.0
            or self.far_apart_factor < 1
            or self.first_runs < 1
            or not 0.0 <= self.probe_below <= 1.0
            or not 0.0 <= self.device_below <= 1.0
        ):
            raise ValueError(
                "LayerGate: need dense_margin >= 1, reprobe_every >= 1, retime_every >= 2, far_apart >= 1, "
                "far_apart_factor >= 1, first_runs >= 1 "
                f"and probe_below, device_below in [0, 1], got {self}"
            )

    def _at(self, bucket: int) -> _Bucket:
        return self._buckets.setdefault(bucket, _Bucket())

    @property
    def deciding(self) -> bool:
        """False when every row runs sparse (``dense_above >= 1``): nothing to decide, nothing to skip."""
        return self.dense_above < 1.0

    def density(self, bucket: int = 0) -> float | None:
        return self._at(bucket).density

    def observe(self, kept: int, causal: int, bucket: int = 0) -> None:
        """The estimate of one call: ``kept`` of ``causal`` blocks (summed over rows and heads)."""
        if causal:
            self._at(bucket).density = kept / causal

    def probe(self, bucket: int = 0) -> bool:
        """Probe unless the latest estimate is far under the break-even, or nothing is decided."""
        d = self._at(bucket).density
        return self.deciding and (d is None or d >= self.probe_below * self.dense_above)

    def on_device(self, bucket: int = 0) -> bool:
        """Decide this call's rows on the device: the latest estimate is well under the break-even (rows are
        expected sparse, so neither the probe nor the host's wait for the counts would pay)."""
        d = self._at(bucket).density
        return self.deciding and d is not None and d < self.device_below * self.dense_above

    def skip_estimate(self, bucket: int = 0) -> bool:
        """Run this call dense without an estimate: the latest estimate is far above the break-even and this
        is not one of the re-estimating calls."""
        b = self._at(bucket)
        d = b.density
        if not self.deciding or d is None or d <= self.dense_margin * self.dense_above:
            b.skipped = 0
            return False
        b.skipped += 1
        return b.skipped % self.reprobe_every != 0

    # timed paths
    def path(self, bucket: int) -> tuple[str, str]:
        """``(path, why)`` for this call: ``dense`` (vLLM's kernel, no estimate) or ``xattn`` (estimate and
        decide per row). ``why``: ``timed`` (the cheaper measured path), ``retime`` (the other path, timed
        again), ``first`` (one of each path's first ``first_runs`` calls in the bucket, to time it) or
        ``density`` (the density rules: nothing timed yet, or timing is off)."""
        b = self._at(bucket)
        b.calls += 1
        if not self.deciding:
            return XATTN, "density"
        if not self.time_paths or not b.runs[XATTN]:
            return (DENSE if self.skip_estimate(bucket) else XATTN), "density"
        if not b.runs[DENSE]:
            return DENSE, "first"
        if len(b.samples) < 2:  # the timings are still on their way
            return (DENSE if self.skip_estimate(bucket) else XATTN), "density"
        for path in (XATTN, DENSE):
            if b.runs[path] < self.first_runs:
                return path, "first"
        cost = {path: b.cost(path) for path in (DENSE, XATTN)}
        best = DENSE if cost[DENSE] <= cost[XATTN] else XATTN
        gap = max(cost.values()) / max(min(cost.values()), 1e-30)
        every = self.retime_every * (self.far_apart_factor if gap >= self.far_apart else 1)
        if (b.calls + self.layer) % every == 0:
            return (XATTN if best == DENSE else DENSE), "retime"
        return best, "timed"

    def started(self, bucket: int, path: str) -> None:
        """``path`` runs in ``bucket`` now (its timing arrives later through :meth:`record`)."""
        self._at(bucket).runs[path] += 1

    def record(self, bucket: int, path: str, ms: float, work: float) -> None:
        """A finished timing: ``path`` took ``ms`` for ``work`` units (the step's causal (query, key) pairs)."""
        if work <= 0 or not math.isfinite(ms) or ms < 0:
            return
        self._at(bucket).samples.setdefault(path, deque(maxlen=3)).append(ms / work)

    def costs(self) -> dict[int, dict[str, float]]:
        """Per bucket's shortest context (tokens): the measured cost of each path timed there."""
        return {bucket_tokens(k): {p: b.cost(p) for p in b.samples} for k, b in sorted(self._buckets.items()) if b.samples}
