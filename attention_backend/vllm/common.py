"""What the CPU and CUDA adapters share: the vLLM check, the config, the per-process counters, impl set-up.

Imports vLLM (only ``vllm.config`` and the tensor-parallel rank from ``vllm.distributed``, which every
platform has); the platform adapters are ``attention_backend.vllm.cpu`` and ``attention_backend.vllm.cuda``,
the entry point is ``attention_backend.vllm.plugin.register``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from vllm.config import get_current_vllm_config
from vllm.distributed.parallel_state import (
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    model_parallel_is_initialized,
)

from attention_backend.config import ADDITIONAL_CONFIG_KEY, XAttentionConfig
from attention_backend.shipped_tables import with_shipped_table
from attention_backend.stats import XAttentionStats
from attention_backend.vllm.contract import Report, require_installed
from attention_backend.vllm.requirements import REQUIREMENTS
from client_edge.protocol.status_marker import markers_enabled, write_marker

logger = logging.getLogger("attention_backend.vllm")

STATS = XAttentionStats()
"""This process's counters (one process-wide record, like the marker file it is written to:
``$XEDGE_STATUS_DIR/attention.stats.<pid>.json``). No planning state lives at module level."""


@functools.cache
def vllm_report() -> Report:
    """The installed vLLM checked against our requirements (once per process; raises if unsupported)."""
    return require_installed(REQUIREMENTS, "xedge attention backend")


@functools.cache
def warn_once(key: str, message: str, *args: Any) -> None:
    """Log ``message`` the first time ``key`` (with these arguments) is seen in this process."""
    logger.warning(message, *args)


def config_from_vllm(vllm_config: Any | None = None) -> XAttentionConfig:
    """Our section of vLLM's ``additional_config`` (``{"xattn": {...}}``), validated. Where it sets no
    threshold, the per-head table shipped for this model (matched on its HF config's shape,
    :mod:`attention_backend.shipped_tables`) is the default; which one is used is logged once."""
    vllm_config = vllm_config if vllm_config is not None else get_current_vllm_config()
    extra = vllm_config.additional_config or {}
    section = extra.get(ADDITIONAL_CONFIG_KEY) if isinstance(extra, dict) else None
    if section is not None and not isinstance(section, dict):
        raise ValueError(
            f"additional_config[{ADDITIONAL_CONFIG_KEY!r}]: expected a mapping of settings, got "
            f"{type(section).__name__} {section!r:.80}"
        )
    model_config = getattr(vllm_config, "model_config", None)
    hf_config = getattr(model_config, "hf_text_config", None) or getattr(model_config, "hf_config", None)
    # warn_once: the line shows in vLLM's log (our logger has no handler of its own) once per process,
    # although this runs once per layer
    table_log = functools.partial(warn_once, "shipped_table")
    config = XAttentionConfig.from_dict(with_shipped_table(section or {}, hf_config, log=table_log))
    layers = getattr(hf_config, "num_hidden_layers", None)
    if config.has_table and isinstance(layers, int) and len(config.threshold) != layers:
        # at start-up: a table of fewer layers would fail at the first long prefill, one of more would silently
        # apply another model's rows (the head count is checked per impl, init_xattn)
        raise ValueError(
            f"--xattn-threshold-table: expected {layers} rows (one per layer of the served model), "
            f"got {len(config.threshold)}: a table written for another model"
        )
    return config


def max_model_len(vllm_config: Any | None = None) -> int:
    """vLLM's ``max_model_len`` (the longest row the kernels must be ready for)."""
    vllm_config = vllm_config if vllm_config is not None else get_current_vllm_config()
    return int(vllm_config.model_config.max_model_len)


def publish_stats(extra: dict[str, Any] | None = None) -> None:
    """The counters into this process's stats marker (once per engine step that planned XAttention rows);
    nothing is built when markers are off."""
    if markers_enabled():
        write_marker("attention", "stats", {**STATS.as_dict(), **(extra or {})})


def tensor_parallel_rank() -> tuple[int, int]:
    """(rank, size) of this worker in vLLM's tensor-parallel group; (0, 1) where no group exists."""
    if not model_parallel_is_initialized():
        return 0, 1
    return get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()


def init_xattn(impl: Any, unsupported: dict[str, bool], *, fp8_estimation: bool = False) -> None:
    """Shared set-up of both impls: config, the features that force a layer dense, the impl marker.
    ``fp8_estimation``: whether this device can run ``estimate_fp8`` (else asking for it stops here).

    ``impl.xattn`` is this tensor-parallel rank's view of the config: a per-head threshold table (written
    for the full model) keeps the rank's query heads, so ``impl.xattn.thresholds(impl.num_heads, layer)``
    answers for the heads this worker computes."""
    tp_rank, tp_size = tensor_parallel_rank()
    impl.xattn = config_from_vllm().for_tensor_parallel(tp_rank, tp_size)
    if impl.xattn.has_table:  # at start-up, not at the first long prefill
        wrong = sorted({len(row) * tp_size for row in impl.xattn.threshold} - {impl.num_heads * tp_size})
        if wrong:
            raise ValueError(
                f"--xattn-threshold-table: expected {impl.num_heads * tp_size} query heads per layer "
                f"(the model's), got rows of {wrong}"
            )
    if impl.xattn.estimate_fp8 and not fp8_estimation:
        raise ValueError("--xattn-estimate-fp8: this device has no fp8 estimation (the CUDA kernels on sm_90+ only)")
    impl.dense_reasons = sorted(name for name, bad in unsupported.items() if bad)
    impl.sparse_enabled = impl.xattn.enabled and not impl.dense_reasons
    if impl.xattn.enabled and impl.dense_reasons:
        warn_once("unsupported", "xattn: layers with %s stay dense", ", ".join(impl.dense_reasons))
    write_marker(
        "attention",
        "impl",
        {
            "class": type(impl).__name__,
            "num_heads": impl.num_heads,
            "tp_rank": tp_rank,
            "tp_size": tp_size,
            "num_kv_heads": impl.num_kv_heads,
            "head_size": impl.head_size,
            "sparse_enabled": impl.sparse_enabled,
            "dense_reasons": impl.dense_reasons,
            "xattn": impl.xattn.to_dict(),
        },
    )
