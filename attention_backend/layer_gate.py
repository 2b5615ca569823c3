"""One attention layer's shortcuts from its latest estimated density (CUDA adapter, pure Python, unit-tested on
CPU). Each vLLM attention layer has its own impl, so each impl holds one gate.

The estimate is what decides a row; these rules only save its cost where the layer's latest estimate makes
the answer near certain:

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

from dataclasses import dataclass, field


@dataclass
class LayerGate:
    """Remembers the layer's latest estimated density (:meth:`observe`) and answers the two shortcuts."""

    dense_above: float  # the break-even density: a row above it runs dense
    dense_margin: float = 1.5
    reprobe_every: int = 16
    probe_below: float = 0.5
    device_below: float = 0.8
    _density: float | None = field(default=None, init=False)  # the latest estimate; None before the first
    _skipped: int = field(default=0, init=False)  # calls since the density went over the margin

    def __post_init__(self) -> None:
        if (
            self.dense_margin < 1.0
            or self.reprobe_every < 1
            or not 0.0 <= self.probe_below <= 1.0
            or not 0.0 <= self.device_below <= 1.0
        ):
            raise ValueError(
                "LayerGate: need dense_margin >= 1, reprobe_every >= 1 and probe_below, device_below in [0, 1], "
                f"got {self}"
            )

    @property
    def deciding(self) -> bool:
        """False when every row runs sparse (``dense_above >= 1``): nothing to decide, nothing to skip."""
        return self.dense_above < 1.0

    def observe(self, kept: int, causal: int) -> None:
        """The estimate of one call: ``kept`` of ``causal`` blocks (summed over rows and heads)."""
        if causal:
            self._density = kept / causal

    def probe(self) -> bool:
        """Probe unless the latest estimate is far under the break-even, or nothing is decided."""
        d = self._density
        return self.deciding and (d is None or d >= self.probe_below * self.dense_above)

    def on_device(self) -> bool:
        """Decide this call's rows on the device: the latest estimate is well under the break-even (rows are
        expected sparse, so neither the probe nor the host's wait for the counts would pay)."""
        d = self._density
        return self.deciding and d is not None and d < self.device_below * self.dense_above

    def skip_estimate(self) -> bool:
        """Run this call dense without an estimate: the latest estimate is far above the break-even and this
        is not one of the re-estimating calls."""
        d = self._density
        if not self.deciding or d is None or d < self.dense_margin * self.dense_above:
            self._skipped = 0
            return False
        self._skipped += 1
        return self._skipped % self.reprobe_every != 0
