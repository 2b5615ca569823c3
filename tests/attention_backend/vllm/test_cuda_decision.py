"""The CUDA adapter's start-up decisions, on any host: where the dense-vs-sparse break-even comes from, and
the settings it refuses (one line naming the flag, never a silent dense fallback)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed")

from attention_backend.break_even import BREAK_EVEN, break_even_for  # noqa: E402
from attention_backend.config import XAttentionConfig  # noqa: E402
from attention_backend.vllm.cuda import (  # noqa: E402
    XAttentionStartupError,
    check_kernel_support,
    resolve_dense_above,
)


def test_break_even_comes_from_the_card_table_or_the_setting() -> None:
    h100 = break_even_for("NVIDIA H100 80GB HBM3")
    assert h100 is not None and 0.0 < h100.density < 1.0 and "xattn_curve" in h100.source
    value, source = resolve_dense_above(XAttentionConfig(), "NVIDIA H100 80GB HBM3")
    assert value == h100.density and source.startswith("H100")
    assert resolve_dense_above(XAttentionConfig(dense_above=0.3), "NVIDIA H100 80GB HBM3")[0] == 0.3
    assert all(e.source for e in BREAK_EVEN)


def test_unmeasured_card_needs_the_flag() -> None:
    with pytest.raises(XAttentionStartupError, match="^--xattn-dense-above: no measured break-even"):
        resolve_dense_above(XAttentionConfig(), "Some Future GPU")
    assert resolve_dense_above(XAttentionConfig(dense_above=0.5), "Some Future GPU")[0] == 0.5


def test_unsupported_head_dim_or_block_stops_at_start_up() -> None:
    check_kernel_support(128, 128)
    with pytest.raises(XAttentionStartupError, match="head dim 96"):
        check_kernel_support(96, 128)
    with pytest.raises(XAttentionStartupError, match="block_size"):
        check_kernel_support(128, 32)
