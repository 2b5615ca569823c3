"""The CUDA adapter's start-up decisions, on any host: where the dense-vs-sparse break-even comes from, and
the settings it refuses (one line naming the flag, never a silent dense fallback)."""

from __future__ import annotations

import pytest

from attention_backend.break_even import BREAK_EVEN, break_even_for
from attention_backend.config import XAttentionConfig
from attention_backend.vllm import cuda_startup as rules


def test_break_even_comes_from_the_card_table_or_the_setting() -> None:
    h100 = break_even_for("NVIDIA H100 80GB HBM3")
    assert h100 is not None and 0.0 < h100.density < 1.0 and "xattn_curve" in h100.source
    value, source = rules.resolve_dense_above(XAttentionConfig(), "NVIDIA H100 80GB HBM3")
    assert value == h100.density and source.startswith("H100")
    assert rules.resolve_dense_above(XAttentionConfig(dense_above=0.3), "NVIDIA H100 80GB HBM3")[0] == 0.3
    assert all(e.source for e in BREAK_EVEN)


def test_unmeasured_card_needs_the_flag() -> None:
    with pytest.raises(rules.XAttentionStartupError, match="^--xattn-dense-above: no measured break-even"):
        rules.resolve_dense_above(XAttentionConfig(), "Some Future GPU")
    assert rules.resolve_dense_above(XAttentionConfig(dense_above=0.5), "Some Future GPU")[0] == 0.5


def test_time_paths_default_follows_the_sparse_kernel_and_the_setting_wins() -> None:
    """Unset: timed with the Triton kernel, untimed with fa3 (measured, bench/results/xattn_real); set: as set."""
    assert rules.resolve_time_paths(XAttentionConfig(), "triton")[0] is True
    on, why = rules.resolve_time_paths(XAttentionConfig(), "fa3")
    assert on is False and "fa3" in why and "xattn_real" in why
    for kernel in ("fa3", "triton"):
        assert rules.resolve_time_paths(XAttentionConfig(time_paths=True), kernel) == (True, "--xattn-time-paths / additional_config time_paths")
        assert rules.resolve_time_paths(XAttentionConfig(time_paths=False), kernel)[0] is False
    with pytest.raises(ValueError, match="time_paths: expected a bool"):
        XAttentionConfig(time_paths="on")  # type: ignore[arg-type]


def test_unsupported_head_dim_or_block_stops_at_start_up() -> None:
    rules.check_kernel_support(128, 128)
    with pytest.raises(rules.XAttentionStartupError, match="head dim 96"):
        rules.check_kernel_support(96, 128)
    with pytest.raises(rules.XAttentionStartupError, match="block_size"):
        rules.check_kernel_support(128, 32)


@pytest.mark.parametrize(("block", "stride"), [(128, 64), (128, 128), (64, 32)])
def test_stride_the_kernels_cannot_split_stops_at_start_up(block: int, stride: int) -> None:
    """The config takes any divisor of the block, the kernels a power of two >= 4 of rows per block: such a
    stride used to pass start-up and fail inside the first long prefill (kernels.checks.check_block_size)."""
    XAttentionConfig(block_size=block, stride=stride)  # valid config, CPU serves it
    rules.check_kernel_support(128, block, block // 16)
    rules.check_kernel_support(128, block)  # no stride given: not checked
    with pytest.raises(rules.XAttentionStartupError, match=rf"^--xattn-stride: expected one of \[1, 2, .*\] .*got {stride}$"):
        rules.check_kernel_support(128, block, stride)


def test_minimum_of_work_comes_from_the_card_or_the_setting() -> None:
    from attention_backend.break_even import causal_attention_flops
    h100 = break_even_for("NVIDIA H100 80GB HBM3")
    flops, source = rules.resolve_min_sparse_flops(XAttentionConfig(), "NVIDIA H100 80GB HBM3")
    assert flops == pytest.approx(h100.min_sparse_ms * 1e-3 * h100.fa3_tflops * 1e12) and "H100" in source
    off, off_source = rules.resolve_min_sparse_flops(XAttentionConfig(min_sparse_ms=0), "Some Future GPU")
    assert off == 0.0 and "no minimum" in off_source
    assert rules.resolve_min_sparse_flops(XAttentionConfig(min_sparse_ms=2.0), "NVIDIA H100 80GB HBM3")[0] == pytest.approx(
        2e-3 * h100.fa3_tflops * 1e12
    )
    with pytest.raises(rules.XAttentionStartupError, match="^--xattn-min-sparse-ms: no measured FA3 throughput"):
        rules.resolve_min_sparse_flops(XAttentionConfig(), "Some Future GPU")
    # SmolLM2 (9 x 64): an 8K prompt is under the H100 minimum, the second 16K chunk of a 32K prompt is over.
    assert causal_attention_flops(8192, 8192, 9, 64) < flops < causal_attention_flops(16384, 32768, 9, 64)
    # one query at the end of k keys sees k of them; a whole causal prompt of n sees n(n+1)/2 pairs
    assert causal_attention_flops(1, 100, 1, 1) == 4 * 100
    assert causal_attention_flops(10, 10, 2, 3) == 4 * 55 * 6


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", True])
def test_bad_minimum_of_work_names_the_flag(bad) -> None:
    from attention_backend.config import additional_config_from_flags

    with pytest.raises(ValueError, match="^--xattn-min-sparse-ms: XAttentionConfig.min_sparse_ms"):
        additional_config_from_flags(min_sparse_ms=bad)


def test_break_even_per_head_dim_where_measured() -> None:
    h100 = break_even_for("NVIDIA H100 80GB HBM3")
    d256, source = rules.resolve_dense_above(XAttentionConfig(), "NVIDIA H100 80GB HBM3", head_dim=256)
    assert d256 < h100.density and "d 256" in source
    d64, source = rules.resolve_dense_above(XAttentionConfig(), "NVIDIA H100 80GB HBM3", head_dim=64)
    assert d64 != h100.density and "9 q / 3 KV heads" in source  # measured apart (0.68, four-warp kernel)
    assert rules.resolve_dense_above(XAttentionConfig(), "NVIDIA H100 80GB HBM3", head_dim=128)[0] == h100.density
    assert rules.resolve_dense_above(XAttentionConfig(dense_above=0.4), "NVIDIA H100 80GB HBM3", head_dim=256)[0] == 0.4


def test_break_even_per_sparse_kernel_falls_back_to_the_triton_value_and_says_so() -> None:
    from dataclasses import replace

    from attention_backend.break_even import BreakEven

    entry = replace(break_even_for("NVIDIA H100 80GB HBM3"), fa3_by_head_dim=((128, 0.8, "fa3 curve"),))
    assert isinstance(entry, BreakEven)
    assert entry.density_for(128, "fa3") == (0.8, "fa3 curve")
    assert entry.density_for(128, "triton") == (entry.density, entry.source)
    d256, source = entry.density_for(256, "fa3")
    assert d256 == entry.density_for(256)[0] and "not measured at head dim 256" in source


def test_layers_with_unsupported_features_stay_dense_and_say_so(caplog) -> None:
    """Gemma-3's sliding-window layers: the impl is set up dense with its reason logged (this once crashed
    on an unhashable list in the log-once cache)."""
    from types import SimpleNamespace

    pytest.importorskip("vllm", reason="vLLM is not installed")
    from vllm.config import VllmConfig, set_current_vllm_config

    from attention_backend.vllm.common import init_xattn

    impl = SimpleNamespace(num_heads=4, num_kv_heads=1, head_size=256)
    with set_current_vllm_config(VllmConfig()):
        init_xattn(impl, {"sliding_window": True, "alibi": False})
    assert impl.sparse_enabled is False and impl.dense_reasons == ["sliding_window"]


def test_fa3_sparse_kernel_with_a_block_size_it_cannot_serve_stops_at_start_up() -> None:
    with pytest.raises(rules.XAttentionStartupError, match="^--xattn-sparse-kernel fa3: .*256 does not divide .*--block-size 128"):
        rules.check_sparse_kernel(XAttentionConfig(sparse_kernel="fa3"), 256)
    for kernel in ("auto", "triton"):  # these fall back to / are the Triton kernel, which serves any page size
        rules.check_sparse_kernel(XAttentionConfig(sparse_kernel=kernel), 256)
    rules.check_sparse_kernel(XAttentionConfig(sparse_kernel="fa3"), 16)


def test_auto_takes_fa3_only_where_it_was_measured_faster_and_the_page_size_divides() -> None:
    """``sparse_kernel=auto``: fa3 at the head dims the card's table holds an fa3 entry for (H100: 128 and 256,
    where the curve measured it faster), the Triton kernel at the others (d 64: slower there), on cards with no
    entry, and with a KV block size that does not divide the XAttention block; each choice says why."""
    h100 = "NVIDIA H100 80GB HBM3"
    entry = break_even_for(h100)
    assert entry is not None and entry.fa3_measured(128) and entry.fa3_measured(256) and not entry.fa3_measured(64)
    for head_dim, page, want in ((128, 16, "fa3"), (256, 128, "fa3"), (64, 16, "triton"), (128, 48, "triton")):
        kind, why = rules.auto_sparse_kernel(h100, head_dim, page, 128)
        assert kind == want, (head_dim, page, why)
    assert "not measured faster at head dim 64" in rules.auto_sparse_kernel(h100, 64, 16, 128)[1]
    assert "48 does not divide" in rules.auto_sparse_kernel(h100, 128, 48, 128)[1]
    assert rules.auto_sparse_kernel("Some Future GPU", 128, 16, 128)[0] == "triton"
    # the break-even follows the kernel: fa3's entry at d 128, the Triton value at d 64
    assert rules.resolve_dense_above(XAttentionConfig(), h100, 128, "fa3")[0] == entry.density_for(128, "fa3")[0] != entry.density

