"""fp8 (e4m3) operands for the estimation GEMM (``XAttentionConfig.estimate_fp8``), torch only.

The fused TMA kernel scales each head so that its absolute maximum lands just under e4m3's largest finite value;
the kernel multiplies the copies and divides the logits by the two scales. The library-GEMM path
(``kernels.estimate_gemm``) scales each reshaped row (``S`` tokens of one head) the same way instead.
What this rounding does to the selection on real attention: ``bench/xattn_fp8_estimate.py``.
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


def fp8_rows_round_trip(x: torch.Tensor, stride: int, first_token: int = 0) -> torch.Tensor:
    """What the library-GEMM fp8 estimate multiplies, in fp32: ``x [L, H, D]`` (absolute tokens from
    ``first_token``) with every reshaped row (tokens ``rS .. rS+S-1``) of each head scaled by its own absolute
    maximum to e4m3 and back."""
    lead = first_token % stride
    n = -(-(lead + x.shape[0]) // stride) * stride
    xp = torch.zeros((n, *x.shape[1:]), dtype=torch.float32)
    xp[lead : lead + x.shape[0]] = x.float().cpu()
    rows = xp.view(n // stride, stride, *x.shape[1:])
    amax = rows.abs().amax(dim=(1, 3), keepdim=True).clamp_min(1e-12)
    back = (rows * (FP8_RANGE / amax)).to(torch.float8_e4m3fn).float() * (amax / FP8_RANGE)
    return back.view(n, *x.shape[1:])[lead : lead + x.shape[0]]
