"""The density above which vLLM's dense kernel beats ours, per GPU model, as measured (no torch import).

Once the estimate and the selection have run, a prefill row's remaining cost is the sparse kernel over the
kept blocks (time ~ density x its dense time) against FlashAttention 3 over all of them. The break-even is
the density where the two meet; above it the vLLM adapter runs FA3 for that row (and layer), counted in the
``attention.stats`` marker and logged. Each entry names the run that measured it (the kernel speed curve,
``bench/xattn_curve.py``; table and JSON in ``bench/results/xattn_curve/``). A card with no entry needs
``dense_above`` in the config (``xedge serve --xattn-dense-above``): the adapter refuses to guess.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BreakEven:
    card: str  # substring of torch.cuda.get_device_name()
    density: float  # run FA3 when the estimated density of a row is above this
    source: str  # the measurement


BREAK_EVEN: tuple[BreakEven, ...] = (
    BreakEven(
        card="H100",
        density=0.58,
        source=(
            "bench/xattn_curve.py on an NVIDIA H100 80GB HBM3, 2026-12-05: sparse kernel = FA3 at density "
            "0.59-0.62 (32K-128K, random and structured masks; bench/results/xattn_curve/notes.md): "
            "the smallest, rounded down"
        ),
    ),
)


def break_even_for(device_name: str) -> BreakEven | None:
    """The measured entry for a GPU named ``device_name`` (``torch.cuda.get_device_name()``), else None."""
    for entry in BREAK_EVEN:
        if entry.card.lower() in device_name.lower():
            return entry
    return None
