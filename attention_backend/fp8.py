"""fp8 (e4m3) operands for the estimation GEMM (``XAttentionConfig.estimate_fp8``), torch only.

Each head is scaled so that its absolute maximum lands just under e4m3's largest finite value; the kernel
multiplies the copies and divides the logits by the two scales. What this rounding does to the selection on
real attention: ``bench/xattn_fp8_estimate.py``.
"""

from __future__ import annotations

import torch

FP8_RANGE = 440.0
"""Each head's absolute maximum is scaled to this (e4m3's largest finite value is 448: the margin keeps the
rounding of the scaled product from passing it)."""


def to_fp8_per_head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [L, H, D]`` -> (e4m3 copy scaled per head, the scale per head ``[H]`` fp32): ``x ~ copy / scale``."""
    amax = x.abs().amax(dim=(0, 2)).float().clamp_min(1e-12)
    scale = (FP8_RANGE / amax).to(x.dtype)
    # scaled in x's own dtype (no fp32 copy of a long prompt); the scale is rounded to it first, so the
    # returned scale is exactly the one applied
    return (x * scale[None, :, None]).to(torch.float8_e4m3fn), scale.float()


def fp8_round_trip(x: torch.Tensor) -> torch.Tensor:
    """What the fp8 estimation multiplies, back in fp32: ``x``'s e4m3 copy divided by its per-head scale."""
    x8, scale = to_fp8_per_head(x)
    return x8.float() / scale[None, :, None]
