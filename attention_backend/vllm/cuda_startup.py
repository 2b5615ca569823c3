"""Start-up rules of the CUDA adapter (:mod:`attention_backend.vllm.cuda`): the break-even density, the minimum of
work, whether layers time their paths, which sparse kernel ``auto`` runs, and what stops at start-up with one line
naming the setting. Pure Python (no vLLM, no Triton), so every rule is tested on any host."""

from __future__ import annotations

from attention_backend.block_pages import pages_unsupported
from attention_backend.break_even import break_even_for
from attention_backend.config import KERNEL_BLOCK_SIZES, KERNEL_HEAD_DIMS, XAttentionConfig, kernel_strides


class XAttentionStartupError(ValueError):
    """The XAttention settings cannot run on this model or card (raised when vLLM builds the backend)."""


def resolve_dense_above(
    config: XAttentionConfig, device_name: str, head_dim: int = 128, kernel: str = "triton"
) -> tuple[float, str]:
    """The density above which a row runs FA3: the config's ``dense_above``, else the card's measured entry
    for the sparse ``kernel`` (``triton`` or ``fa3``) and this head dim where it was measured apart."""
    if config.dense_above is not None:
        return config.dense_above, "--xattn-dense-above / additional_config dense_above"
    entry = break_even_for(device_name)
    if entry is None:
        raise XAttentionStartupError(
            f"--xattn-dense-above: no measured break-even density for GPU {device_name!r} "
            "(attention_backend/break_even.py); measure it with bench/xattn_curve.py and pass it"
        )
    density, source = entry.density_for(head_dim, kernel)
    return density, f"{entry.card}: {source}"


def resolve_min_sparse_flops(config: XAttentionConfig, device_name: str) -> tuple[float, str]:
    """The causal attention FLOPs a row needs in a layer to run XAttention: ``min_sparse_ms`` (the config's,
    else the card's) times the card's measured FA3 throughput; 0 when the minimum is off."""
    entry = break_even_for(device_name)
    ms = config.min_sparse_ms if config.min_sparse_ms is not None else (entry.min_sparse_ms if entry else None)
    if ms == 0.0:
        return 0.0, "--xattn-min-sparse-ms 0 (no minimum)"
    if entry is None:
        raise XAttentionStartupError(
            f"--xattn-min-sparse-ms: no measured FA3 throughput for GPU {device_name!r} "
            "(attention_backend/break_even.py); measure it with bench/xattn_curve.py, or pass 0 (no minimum)"
        )
    source = "--xattn-min-sparse-ms" if config.min_sparse_ms is not None else f"{entry.card}: {entry.min_source}"
    return ms * 1e-3 * entry.fa3_tflops * 1e12, f"{ms:g} ms at {entry.fa3_tflops:g} TFLOP/s ({source})"


def resolve_time_paths(config: XAttentionConfig, kernel: str) -> tuple[bool, str]:
    """Whether each layer times dense vs XAttention (``LayerGate``): the config's ``time_paths``, else on with
    the Triton sparse kernel and off with fa3, as measured on the real models (``XAttentionConfig.time_paths``)."""
    if config.time_paths is not None:
        return config.time_paths, "--xattn-time-paths / additional_config time_paths"
    if kernel == "fa3":
        return False, (
            "default with the fa3 sparse kernel: its layer timings overstated XAttention's cost on Gemma-3-270M "
            "(128K 1.04x FA3 timed vs 1.23x untimed, bench/results/xattn_real/notes.md)"
        )
    return True, "default with the Triton sparse kernel (SmolLM2-135M 32K: 0.79x -> 1.11x FA3 timed)"


def check_kernel_support(head_size: int, block_size: int, stride: int | None = None) -> None:
    """Stop at start-up (one line naming the setting) when the Triton kernels cannot serve this model."""
    if head_size not in KERNEL_HEAD_DIMS:
        raise XAttentionStartupError(
            f"--xattn (enabled): the model's head dim {head_size} is not one the XAttention kernels support "
            f"{KERNEL_HEAD_DIMS}; serve it without XAttention (additional_config xattn.enabled=false)"
        )
    if block_size not in KERNEL_BLOCK_SIZES:
        raise XAttentionStartupError(
            f"xattn block_size: expected one of {KERNEL_BLOCK_SIZES} on CUDA, got {block_size}"
        )
    if stride is not None and stride not in kernel_strides(block_size):
        raise XAttentionStartupError(
            f"--xattn-stride: expected one of {list(kernel_strides(block_size))} on CUDA with block_size {block_size} (the kernels split a block "
            f"into a power of two >= 4 of antidiagonal rows), got {stride}"
        )


def auto_sparse_kernel(device_name: str, head_dim: int, page_size: int, block_size: int) -> tuple[str, str]:
    """What ``sparse_kernel=auto`` runs, and why: ``fa3`` where the card's break-even table holds an fa3
    entry for this head dim (measured faster than the Triton kernel there, ``attention_backend.break_even``)
    and vLLM's KV block size divides the XAttention block; else ``triton``."""
    reason = pages_unsupported(page_size, block_size)
    if reason:
        return "triton", f"{reason} (FA3 needs it)"
    entry = break_even_for(device_name)
    if entry is None or not entry.fa3_measured(head_dim):
        return "triton", f"the fa3 sparse kernel was not measured faster at head dim {head_dim} on {device_name!r}"
    return "fa3", f"measured faster than the Triton kernel at head dim {head_dim} on {entry.card}"


def check_sparse_kernel(config: XAttentionConfig, page_size: int) -> None:
    """Stop at start-up when ``sparse_kernel`` is ``fa3`` and vLLM's KV block size cannot serve it."""
    reason = pages_unsupported(page_size, config.block_size)
    if config.sparse_kernel == "fa3" and reason:
        raise XAttentionStartupError(
            f"--xattn-sparse-kernel fa3: {reason}; start vLLM with --block-size {config.block_size} "
            "or use --xattn-sparse-kernel auto"
        )
