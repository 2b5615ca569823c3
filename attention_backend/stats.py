"""Counters of the XAttention vLLM path, per process (the worker), exported as a status marker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class XAttentionStats:
    """Counts since the process started, of the layers XAttention may serve (plain causal decoder
    attention). Requests are counted once per engine step (not per layer), by the path they took, in
    the steps the adapter plans: those with a prefill and some context of at least ``min_sparse_len``
    tokens (other steps go straight to vLLM's kernel, uncounted). So ``dense_short_prefills`` counts only
    short prefills that shared such a step. Blocks are summed over layers and heads of the estimated
    prefills (on CUDA: every candidate row, also those then run dense; ``density`` is the estimate's).
    ``sparse_row_layers`` / ``dense_row_layers`` (CUDA): per (candidate row, layer), whether the sparse
    kernel ran or vLLM's dense kernel did because the estimated density was above the break-even, the
    layer's latest estimate at that length was far above it (``history_``) or dense measured cheaper
    there (``timed_``: :mod:`attention_backend.layer_gate`).
    """

    sparse_prefills: int = 0
    dense_short_prefills: int = 0
    fallback_cached_prefills: int = 0
    dense_small_prefills: int = 0  # CUDA: long prefill rows under the minimum of work (min_sparse_ms), per step
    sparse_tokens: int = 0
    kept_blocks: int = 0
    causal_blocks: int = 0
    sparse_row_layers: int = 0
    dense_row_layers: int = 0
    history_dense_row_layers: int = 0  # CUDA: of dense_row_layers, run dense on the layer's latest estimate alone
    timed_dense_row_layers: int = 0  # CUDA: of dense_row_layers, run dense with no estimate on the timed paths
    # CUDA, the timed paths (layer_gate): layer -> context bucket's shortest length -> path -> ms per unit of work
    path_costs: dict[int, dict[int, dict[str, float]]] = field(default_factory=dict)
    # CUDA, the timed paths: layer -> bucket -> path -> [spans that began on an idle GPU, spans timed]; an idle
    # start means the span's time includes the host launching its work (a diagnostic, not used to decide)
    path_idle_starts: dict[int, dict[int, dict[str, list[int]]]] = field(default_factory=dict)
    per_layer: dict[int, list[int]] = field(default_factory=dict)  # CUDA: layer -> [kept, causal] estimated

    def add_span(self, layer: int, bucket: int, path: str, idle_start: bool) -> None:
        row = self.path_idle_starts.setdefault(layer, {}).setdefault(bucket, {}).setdefault(path, [0, 0])
        row[0] += int(idle_start)
        row[1] += 1

    def add_layer(self, layer: int, kept: int, causal: int) -> None:
        row = self.per_layer.setdefault(layer, [0, 0])
        row[0] += kept
        row[1] += causal

    @property
    def density(self) -> float | None:
        """Kept share of causal blocks over all sparse prefills so far (None before the first)."""
        return self.kept_blocks / self.causal_blocks if self.causal_blocks else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "density": self.density}
