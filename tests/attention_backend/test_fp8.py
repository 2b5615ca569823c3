"""``attention_backend.fp8.to_fp8_per_head``: the operands of the fp8 estimation GEMM (torch, any host)."""

from __future__ import annotations

import pytest
import torch

from attention_backend.fp8 import FP8_RANGE, to_fp8_per_head


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_head_is_scaled_into_range_and_round_trips(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, 64, generator=g) * torch.tensor([1e-3, 1.0, 30.0, 0.0])[None, :, None]  # a zero head
    x = x.to(dtype)
    x8, scale = to_fp8_per_head(x)
    assert x8.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32 and scale.shape == (4,)
    assert torch.isfinite(x8.float()).all() and float(x8.float().abs().max()) <= 448.0
    back = x8.float() / scale[None, :, None]
    for h in range(3):  # e4m3 keeps 3 mantissa bits: within 1/16 of each value (relative), below its subnormals
        amax = float(x[:, h].float().abs().max())
        assert float(x8[:, h].float().abs().max()) == pytest.approx(FP8_RANGE, rel=0.02)
        err = (back[:, h] - x[:, h].float()).abs()
        assert bool((err <= x[:, h].float().abs() / 16 + amax * 2**-14).all()), h
    assert float(back[:, 3].abs().max()) == 0.0
