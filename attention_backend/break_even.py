"""The density above which vLLM's dense kernel beats ours, per GPU model, as measured (no torch import).

Once the estimate and the selection have run, a prefill row's remaining cost is the sparse kernel over the
kept blocks (time ~ density x its dense time) against FlashAttention 3 over all of them. The break-even is
the density where the two meet; above it the vLLM adapter runs FA3 for that row (and layer), counted in the
``attention.stats`` marker and logged. Each entry names the run that measured it (the kernel speed curve,
``bench/xattn_curve.py``; table and JSON in ``bench/results/xattn_curve/``). A card with no entry needs
``dense_above`` in the config (``xedge serve --xattn-dense-above``): the adapter refuses to guess.

The second rule is a minimum of work: a row whose dense attention in one layer would take under
``min_sparse_ms`` on the card (causal FLOPs / ``fa3_tflops``) runs FA3 without an estimate, because the
sparse path's fixed per-layer cost (host work and launches) is then not won back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BreakEven:
    card: str  # substring of torch.cuda.get_device_name()
    density: float  # run FA3 when the estimated density of a row is above this
    source: str  # the measurement
    fa3_tflops: float  # FA3's causal prefill throughput on this card (d 128, bf16, 128K)
    min_sparse_ms: float  # rows whose dense attention in a layer takes less run FA3 (fixed per-layer cost)
    min_source: str  # the measurement behind min_sparse_ms
    by_head_dim: tuple[tuple[int, float, str], ...] = ()  # (head dim, density, source) where it differs
    fa3_by_head_dim: tuple[tuple[int, float, str], ...] = ()  # the same for the fa3 sparse kernel

    def fa3_measured(self, head_dim: int) -> bool:
        """Whether the fa3 sparse kernel was measured at ``head_dim`` on this card; an entry is added only
        where it beat the Triton kernel (``auto`` picks fa3 only there)."""
        return any(dim == head_dim for dim, _, _ in self.fa3_by_head_dim)

    def density_for(self, head_dim: int, kernel: str = "triton") -> tuple[float, str]:
        """The break-even of ``kernel`` (``triton`` or ``fa3``) at ``head_dim``. Where the fa3 kernel was not
        measured, the Triton kernel's (said in the source): a lower break-even only sends more rows to FA3."""
        if kernel == "fa3":
            for dim, density, source in self.fa3_by_head_dim:
                if dim == head_dim:
                    return density, source
        density, source = self.density, self.source
        for dim, dim_density, dim_source in self.by_head_dim:
            if dim == head_dim:
                density, source = dim_density, dim_source
        if kernel == "fa3":
            source = f"the Triton kernel's (the fa3 kernel's is not measured at head dim {head_dim} on this card): {source}"
        return density, source


BREAK_EVEN: tuple[BreakEven, ...] = (
    BreakEven(
        card="H100",
        density=0.66,
        source=(
            "bench/xattn_curve.py on an NVIDIA H100 80GB HBM3, 2026-12-06: the Triton sparse kernel alone costs "
            "what FA3 costs at density 0.67-0.68 (32K-128K, 32 q / 8 KV heads, d 128, random and structured "
            "masks; bench/results/xattn_curve/notes.md): the smallest, rounded down"
        ),
        fa3_tflops=667.0,
        min_sparse_ms=0.6,
        by_head_dim=(
            (
                64,
                0.68,
                "bench/xattn_curve.py on an NVIDIA H100 80GB HBM3, 2026-12-06 13:58 UTC: the Triton sparse kernel (four "
                "warps at d <= 64) alone costs what FA3 costs at density 0.68 at 32K, 0.79-0.81 at 64K-128K "
                "(SmolLM2-135M's shape 9 q / 3 KV heads, random and structured masks; "
                "bench/results/xattn_curve/xattn_curve_d64.json): the smallest, rounded down",
            ),
            (
                256,
                0.25,
                "bench/xattn_profile.py, Gemma-3-270M global layers (4 heads, d 256) at 64K on an NVIDIA H100 80GB "
                "HBM3, 2026-12-05: the sparse kernel (one pipeline stage at d 256) took 31.9 ms where FA3 took 32.6 ms "
                "at an estimated density of 0.26: rounded down",
            ),
        ),
        fa3_by_head_dim=(
            (
                128,
                0.87,
                "bench/xattn_curve.py on an NVIDIA H100 80GB HBM3, 2026-12-07 08:35 UTC: the fa3 sparse kernel as it "
                "runs by default at d 128 (per-head calls on 4 streams, TMA pages) alone costs what FA3 costs at "
                "density 0.87-0.95 (32K-128K, 32 q / 8 KV heads, random and structured masks; "
                "bench/results/xattn_curve/notes.md): the smallest, rounded down",
            ),
            (
                256,
                0.58,
                "bench/xattn_curve.py on an NVIDIA H100 80GB HBM3, 2026-12-06: the fa3 sparse kernel alone costs "
                "what FA3 costs at density 0.59-0.77 (32K-128K, Gemma-3-270M's global-layer shape 4 q / 1 KV "
                "heads; bench/results/xattn_curve/notes.md): the smallest, rounded down",
            ),
        ),
        min_source=(
            "bench/xattn_profile.py, SmolLM2-135M at 32K on an NVIDIA H100 80GB HBM3, 2026-12-05: the XAttention "
            "path costs ~0.6-1.0 ms of host time per layer and chunk (estimate + select + sparse launches), "
            "more than FA3's whole layer for short rows (bench/results/xattn_real/notes.md)"
        ),
    ),
)


def break_even_for(device_name: str) -> BreakEven | None:
    """The measured entry for a GPU named ``device_name`` (``torch.cuda.get_device_name()``), else None."""
    for entry in BREAK_EVEN:
        if entry.card.lower() in device_name.lower():
            return entry
    return None


def causal_pairs(q_len: int, k_len: int) -> float:
    """The (query, key) pairs causal attention visits for ``q_len`` new queries (the last of ``k_len`` positions)."""
    return q_len * (k_len - q_len) + q_len * (q_len + 1) / 2


def causal_attention_flops(q_len: int, k_len: int, num_heads: int, head_dim: int) -> float:
    """FLOPs of dense causal attention for ``q_len`` new queries (the last of ``k_len`` positions):
    two matmuls of 2 FLOPs per multiply-add over the visible (query, key) pairs."""
    return 4.0 * causal_pairs(q_len, k_len) * num_heads * head_dim
