"""What ``attention_backend.vllm`` (plugin, cpu, cuda) relies on in vLLM (checked by ``contract``; no vLLM import).

Every name the adapter imports, subclasses, calls or reads is listed; ``source`` entries pin behaviour
(the CPU platform resolves ``CPU_ATTN`` through the override table; FLASH_ATTN's cache packs K and V
in the last dim). Optional entries are version differences the adapter handles; the matrix per
version is in docs/vllm_versions.md.
"""

from __future__ import annotations

from attention_backend.vllm.contract import Requirement

_REGISTRY = "vllm.v1.attention.backends.registry"
_CPU = "vllm.v1.attention.backends.cpu_attn"
_FA = "vllm.v1.attention.backends.flash_attn"
_BACKEND = "vllm.v1.attention.backend"
_SCHEDULER_PARAMS = (
    "num_reqs", "num_heads", "num_kv_heads", "head_dim", "seq_lens", "dtype", "query_start_loc", "causal",
    "sliding_window_size", "isa", "enable_kv_split",
)  # fmt: skip
_IMPL_ATTRS = (
    "attn_type", "sliding_window", "alibi_slopes", "logits_soft_cap", "kv_sharing_target_layer_name",
    "num_heads", "num_kv_heads", "head_size", "scale", "kv_cache_dtype",
)  # fmt: skip

REQUIREMENTS: tuple[Requirement, ...] = (
    # plugin loading and the module-level imports of the adapter (an import error would only be logged)
    Requirement("name", "vllm.plugins", "DEFAULT_PLUGINS_GROUP"),
    Requirement("name", "vllm.envs", "VLLM_CPU_ATTN_SPLIT_KV"),
    Requirement("name", "vllm.config", "get_current_vllm_config"),
    Requirement("attr", "vllm.config.vllm", "VllmConfig.additional_config"),
    Requirement("function", "vllm.model_executor.models.utils", "extract_layer_index", ("layer_name",)),
    Requirement("name", "vllm.platforms", "current_platform"),
    # tensor parallel: which query heads this worker holds (a per-head threshold table is sliced by rank)
    *(
        Requirement("function", "vllm.distributed.parallel_state", name, ())
        for name in (
            "model_parallel_is_initialized",
            "get_tensor_model_parallel_rank",
            "get_tensor_model_parallel_world_size",
        )
    ),
    Requirement("attr", _BACKEND, "AttentionType.DECODER"),
    # registration: override CPU_ATTN / FLASH_ATTN by enum member, resolved through the override table
    Requirement("function", _REGISTRY, "register_backend", ("backend", "class_path")),
    Requirement("attr", _REGISTRY, "AttentionBackendEnum.CPU_ATTN"),
    Requirement("attr", _REGISTRY, "AttentionBackendEnum.FLASH_ATTN"),
    Requirement("source", _REGISTRY, "AttentionBackendEnum.get_path", snippet="_ATTN_OVERRIDES.get(self"),
    Requirement(
        "source", "vllm.platforms.cpu", "CpuPlatform.get_attn_backend_cls", snippet="CPU_ATTN.get_path()"
    ),
    # CPU: backend and impl we subclass, the metadata we slice, the scheduler metadata we rebuild
    Requirement("method", _CPU, "CPUAttentionBackend.get_impl_cls"),
    Requirement("source", _CPU, "CPUAttentionBackend.get_name", snippet='return "CPU_ATTN"'),
    Requirement(
        "method",
        _CPU,
        "CPUAttentionBackendImpl.forward",
        ("self", "layer", "query", "key", "value", "kv_cache", "attn_metadata", "output"),
    ),
    Requirement("attr", _CPU, "CPUAttentionBackendImpl.sinks"),
    *(Requirement("attr", _CPU, f"CPUAttentionBackendImpl.{attr}") for attr in _IMPL_ATTRS),
    *(
        Requirement("attr", _CPU, f"CPUAttentionMetadata.{field}")
        for field in (
            "num_actual_tokens",
            "max_query_len",
            "query_start_loc",
            "max_seq_len",
            "seq_lens",
            "block_table",
            "slot_mapping",
            "scheduler_metadata",
            "causal",
        )  # fmt: skip
    ),
    Requirement("function", "vllm._custom_ops", "cpu_attn_get_scheduler_metadata", _SCHEDULER_PARAMS),
    Requirement(
        "function",
        "vllm._custom_ops",
        "cpu_attn_get_scheduler_metadata",
        ("kv_cache_dtype",),
        optional=True,
        why="absent in vLLM 0.26: the scheduler metadata is built without kv_cache_dtype",
    ),
    Requirement("method", _CPU, "CPUAttentionBackend.get_builder_cls"),
    Requirement(
        "method",
        _CPU,
        "CPUAttentionMetadataBuilder.build",
        ("self", "common_prefix_len", "common_attn_metadata", "fast_build"),
        exact=True,
    ),
    *(
        Requirement("attr", _CPU, f"CPUAttentionMetadataBuilder.{attr}")
        for attr in ("num_heads", "num_kv_heads", "head_dim", "dtype", "window_size", "isa", "vllm_config")
    ),
    # CUDA: FLASH_ATTN backend, impl and metadata builder we subclass
    Requirement("method", _FA, "FlashAttentionBackend.get_impl_cls"),
    Requirement("method", _FA, "FlashAttentionBackend.get_builder_cls"),
    Requirement(
        "method",
        _FA,
        "FlashAttentionMetadataBuilder.build",
        ("self", "common_prefix_len", "common_attn_metadata", "fast_build"),
        exact=True,
    ),
    Requirement(
        "method",
        _FA,
        "FlashAttentionImpl.forward",
        ("self", "layer", "query", "key", "value", "kv_cache", "attn_metadata", "output"),
    ),
    Requirement(
        "source",
        _FA,
        "FlashAttentionImpl.forward",
        snippet="key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)",
        why="the Triton prefill reads K/V with FLASH_ATTN's [pages, Hkv, page, 2D] layout",
    ),
    *(Requirement("attr", _FA, f"FlashAttentionImpl.{attr}") for attr in _IMPL_ATTRS),
    *(
        Requirement("attr", _FA, f"FlashAttentionMetadata.{field}")
        for field in (
            "num_actual_tokens", "max_query_len", "query_start_loc", "max_seq_len", "seq_lens", "block_table",
            "slot_mapping", "scheduler_metadata", "max_num_splits", "causal",
        )  # fmt: skip
    ),
    Requirement("attr", _FA, "FlashAttentionMetadataBuilder.vllm_config"),
    Requirement(
        "attr",
        _FA,
        "FlashAttentionMetadata.use_cascade",
        optional=True,
        why="cascade attention was removed in vLLM 0.32: no cascade steps to leave dense",
    ),
    *(
        Requirement("attr", _BACKEND, f"CommonAttentionMetadata.{field}")
        for field in ("num_reqs", "query_start_loc_cpu", "seq_lens", "seq_lens_cpu_upper_bound")
    ),
    # KV-cache groups of local layers only (their builder plans nothing)
    *(Requirement("name", "vllm.v1.kv_cache_interface", n) for n in ("SlidingWindowSpec", "ChunkedLocalAttentionSpec")),
)
