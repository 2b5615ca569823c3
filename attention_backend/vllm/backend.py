"""The vLLM adapter: the only module of ``attention_backend`` that imports vLLM.

``register()`` is the ``vllm.general_plugins`` entry point ``xedge_attention``. vLLM calls it in every
process it starts (API server, EngineCore, worker). On CPU it replaces vLLM's ``CPU_ATTN`` backend with
``XAttentionCPUBackend``, a subclass that keeps the name ``CPU_ATTN`` (a new name would need its own
enum entry) and whose impl delegates to vLLM's own CPU kernels. On CUDA it replaces ``FLASH_ATTN``
(FlashAttention 3 on Hopper) with ``XAttentionCudaBackend``: long prefills (chunks and prefix hits
included: K/V are read from the paged cache) run the Triton kernels of ``attention_backend.kernels``
through ``paged_prefill``; decodes and short prefills run vLLM's FlashAttention.

Differences between the supported vLLM versions (0.26 - 0.33) are handled here and nowhere else.
``register()`` first checks the installed vLLM against ``vllm_requirements.REQUIREMENTS`` (raising
``VllmIncompatible`` with the version and missing symbols). The version differences handled below
(docs/vllm_versions.md): the CPU kernel ISA lives on the impl up to 0.28 and on the layer from 0.29;
``cpu_attn_get_scheduler_metadata`` takes ``kv_cache_dtype`` from 0.27; FLASH_ATTN metadata has
``use_cascade`` up to 0.31 (cascade attention is gone from 0.32); ``CommonAttentionMetadata`` has
``seq_lens_cpu`` up to 0.29.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from typing import Any

import torch
from vllm import _custom_ops as ops
from vllm import envs
from vllm.config import get_current_vllm_config
from vllm.model_executor.models.utils import extract_layer_index
from vllm.platforms import current_platform
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend, CPUAttentionBackendImpl
from vllm.v1.attention.backends.flash_attn import (
    FlashAttentionBackend,
    FlashAttentionImpl,
    FlashAttentionMetadata,
    FlashAttentionMetadataBuilder,
)

from attention_backend.batch_plan import BatchPlan, RowPath, plan_batch
from attention_backend.config import ADDITIONAL_CONFIG_KEY, XAttentionConfig
from attention_backend.prefill import xattention_prefill
from attention_backend.stats import XAttentionStats
from attention_backend.vllm.contract import Report, VllmIncompatible, require_installed
from attention_backend.vllm.requirements import REQUIREMENTS
from client_edge.protocol.status_marker import write_marker

try:  # vLLM >= 0.11 keeps the registry under v1/
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend
except ImportError:  # pragma: no cover - older layout
    from vllm.attention.backends.registry import (  # type: ignore[no-redef]
        AttentionBackendEnum,
        register_backend,
    )

logger = logging.getLogger(__name__)

CPU_BACKEND_PATH = f"{__name__}.XAttentionCPUBackend"
CUDA_BACKEND_PATH = f"{__name__}.XAttentionCudaBackend"

STATS = XAttentionStats()
"""This process's counters; also written to ``$XEDGE_STATUS_DIR/attention.stats.<pid>.json``."""

_warned: set[str] = set()


@functools.cache
def _vllm() -> Report:
    """The installed vLLM checked against our requirements (once per process; raises if unsupported)."""
    return require_installed(REQUIREMENTS, "xedge attention backend")


_last_plan: tuple[Any, BatchPlan] | None = None  # (metadata object, its plan): plan once per step


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _config_from_vllm() -> XAttentionConfig:
    extra = get_current_vllm_config().additional_config or {}
    section = extra.get(ADDITIONAL_CONFIG_KEY) if isinstance(extra, dict) else None
    return XAttentionConfig.from_dict(section or {})


_last_subset: tuple[Any, torch.Tensor, Any] | None = None  # (metadata, rows, sub-metadata) per step
_SCHEDULER_TAKES_KV_DTYPE = (
    "kv_cache_dtype" in inspect.signature(ops.cpu_attn_get_scheduler_metadata).parameters
)
"""vLLM >= 0.27 builds the CPU scheduler metadata with the cache dtype; 0.26 has no such parameter."""


def _dense_subset(
    attn_metadata: Any, plan: BatchPlan, impl: CPUAttentionBackendImpl, layer: Any, dtype: torch.dtype
) -> tuple[torch.Tensor, Any]:
    """Token rows and a CPUAttentionMetadata for the requests of ``plan`` that are not SPARSE, so
    vLLM's kernel skips the sparse rows (built once per step; vLLM 0.32 metadata layout)."""
    global _last_subset
    if _last_subset is not None and _last_subset[0] is attn_metadata:
        return _last_subset[1], _last_subset[2]
    reqs = [r for r in plan.requests if r.path is not RowPath.SPARSE]
    idx = torch.tensor([r.index for r in reqs], dtype=torch.long)
    rows = torch.cat([torch.arange(r.start, r.end) for r in reqs])
    lens = [r.end - r.start for r in reqs]
    qsl = torch.zeros(len(reqs) + 1, dtype=attn_metadata.query_start_loc.dtype)
    qsl[1:] = torch.cumsum(torch.tensor(lens), 0)
    seq_lens = attn_metadata.seq_lens[idx]
    sub = dataclasses.replace(
        attn_metadata,
        num_actual_tokens=int(rows.numel()),
        max_query_len=max(lens),
        query_start_loc=qsl,
        max_seq_len=int(seq_lens.max()),
        seq_lens=seq_lens,
        block_table=attn_metadata.block_table[idx],
        slot_mapping=attn_metadata.slot_mapping[rows],
        scheduler_metadata=ops.cpu_attn_get_scheduler_metadata(
            num_reqs=len(reqs),
            num_heads=impl.num_heads,
            num_kv_heads=impl.num_kv_heads,
            head_dim=impl.head_size,
            seq_lens=seq_lens,
            dtype=dtype,
            query_start_loc=qsl,
            causal=True,
            sliding_window_size=-1,
            isa=_cpu_isa(impl, layer),
            enable_kv_split=envs.VLLM_CPU_ATTN_SPLIT_KV,
            **({"kv_cache_dtype": impl.kv_cache_dtype} if _SCHEDULER_TAKES_KV_DTYPE else {}),
        ),
    )
    _last_subset = (attn_metadata, rows, sub)
    return rows, sub


def _cpu_isa(impl: CPUAttentionBackendImpl, layer: Any) -> str:
    """The CPU kernel ISA vLLM picked: on the impl up to vLLM 0.28, set on the layer by the metadata
    builder from 0.29."""
    for holder in (impl, layer):
        isa = getattr(holder, "isa", None)
        if isa is not None:
            return isa
    raise VllmIncompatible(f"vLLM {_vllm().version}: neither the CPU attention impl nor its layer has an ISA")


def _plan(attn_metadata: Any, min_sparse_len: int) -> BatchPlan:
    """Plan once per engine step: every layer of a step shares one metadata object."""
    global _last_plan
    if _last_plan is not None and _last_plan[0] is attn_metadata:
        return _last_plan[1]
    n = attn_metadata.num_actual_tokens
    qsl = [min(int(x), n) for x in attn_metadata.query_start_loc.tolist()]
    plan = plan_batch(qsl, [int(x) for x in attn_metadata.seq_lens.tolist()], min_sparse_len)
    _last_plan = (attn_metadata, plan)
    STATS.sparse_prefills += len(plan.of(RowPath.SPARSE))
    STATS.sparse_tokens += sum(r.end - r.start for r in plan.of(RowPath.SPARSE))
    STATS.dense_short_prefills += len(plan.of(RowPath.DENSE_SHORT))
    fallback = plan.of(RowPath.FALLBACK_CACHED)
    STATS.fallback_cached_prefills += len(fallback)
    if fallback:
        r = fallback[0]
        _warn_once(
            "fallback",
            "xattn: a long prefill (%d new tokens) attends to %d cached tokens; vLLM's CPU KV cache is "
            "packed per instruction set and is not read back, so such prefills run DENSE (counted in "
            "attention.stats fallback_cached_prefills; logged once)",
            r.end - r.start,
            r.seq_len - (r.end - r.start),
        )
    if plan.has_sparse or fallback:
        write_marker("attention", "stats", STATS.as_dict())
    return plan


def _init_xattn(impl: Any, unsupported: dict[str, bool]) -> None:
    """Shared set-up of both impls: config, the features that force a layer dense, the impl marker."""
    impl.xattn = _config_from_vllm()
    impl.dense_reasons = sorted(name for name, bad in unsupported.items() if bad)
    impl.sparse_enabled = impl.xattn.enabled and not impl.dense_reasons
    if impl.xattn.enabled and impl.dense_reasons:
        _warn_once("unsupported", "xattn: layers with %s stay dense", impl.dense_reasons)
    write_marker(
        "attention",
        "impl",
        {
            "class": type(impl).__name__,
            "num_heads": impl.num_heads,
            "num_kv_heads": impl.num_kv_heads,
            "head_size": impl.head_size,
            "sparse_enabled": impl.sparse_enabled,
            "dense_reasons": impl.dense_reasons,
            "xattn": impl.xattn.to_dict(),
        },
    )


def register() -> None:
    """vLLM general-plugin entry point: put our attention backend in vLLM's path (idempotent).

    Raises ``VllmIncompatible`` (nothing registered) when the installed vLLM lacks what we need."""
    _vllm()
    if current_platform.is_cpu():
        register_backend(AttentionBackendEnum.CPU_ATTN, CPU_BACKEND_PATH)
        write_marker("attention", "registered", {"backend": "CPU_ATTN", "class_path": CPU_BACKEND_PATH})
        return
    if current_platform.is_cuda():
        register_backend(AttentionBackendEnum.FLASH_ATTN, CUDA_BACKEND_PATH)
        write_marker("attention", "registered", {"backend": "FLASH_ATTN", "class_path": CUDA_BACKEND_PATH})
        return
    raise NotImplementedError(
        f"xedge XAttention supports the CPU and CUDA platforms only, got {current_platform.device_name!r}"
    )


class XAttentionCPUBackendImpl(CPUAttentionBackendImpl):
    """vLLM's CPU attention impl with XAttention for long prefills.

    Decodes, short prefills and prefills that attend to cached context run through vLLM's own kernel
    (``super().forward``); a prefill whose context has at least ``min_sparse_len`` tokens, all of them
    in this forward's key/value, runs :func:`xattention_prefill`. Layers with features XAttention does
    not model (sliding window, ALiBi, soft-cap, sinks, non-decoder attention) always stay dense.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layer_index: int | None = None
        _init_xattn(
            self,
            {
                "attn_type": self.attn_type != AttentionType.DECODER,
                "sliding_window": self.sliding_window != -1,
                "alibi": self.alibi_slopes is not None,
                "softcap": bool(self.logits_soft_cap),
                "sinks": self.sinks is not None,
                "kv_sharing": self.kv_sharing_target_layer_name is not None,
            },
        )

    def forward(
        self,
        layer: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: Any,
        output: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if (
            not self.sparse_enabled
            or attn_metadata is None
            or key is None
            or not attn_metadata.causal
            or attn_metadata.max_query_len < 2
            or attn_metadata.max_seq_len < self.xattn.min_sparse_len
        ):
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        plan = _plan(attn_metadata, self.xattn.min_sparse_len)
        if not plan.has_sparse:
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        if not plan.all_sparse:
            self._dense_rows(layer, query, key, value, kv_cache, attn_metadata, plan, out, *args, **kwargs)
        layer_index = self._layer(layer)
        for req in plan.of(RowPath.SPARSE):
            rows = slice(req.start, req.end)
            result, mask = xattention_prefill(
                query[rows], key[rows], value[rows], self.xattn, layer=layer_index, scale=self.scale
            )
            out[rows] = result.to(out.dtype)
            n_blocks = mask.shape[1]
            STATS.kept_blocks += int(mask.sum())
            STATS.causal_blocks += self.num_heads * n_blocks * (n_blocks + 1) // 2
        write_marker("attention", "stats", STATS.as_dict())
        return output

    def _dense_rows(
        self,
        layer: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: Any,
        plan: BatchPlan,
        out: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run vLLM's kernel on the batch's non-sparse requests only (gathered), writing their rows."""
        rows, sub = _dense_subset(attn_metadata, plan, self, layer, query.dtype)
        sub_out = torch.empty(
            (rows.numel(), self.num_heads, self.head_size), dtype=out.dtype, device=out.device
        )
        super().forward(layer, query[rows], key[rows], value[rows], kv_cache, sub, sub_out, *args, **kwargs)
        out[rows] = sub_out

    def _layer(self, layer: Any) -> int | None:
        if not self.xattn.has_table:
            return None
        if self._layer_index is None:
            self._layer_index = extract_layer_index(layer.layer_name)
        return self._layer_index


class XAttentionCPUBackend(CPUAttentionBackend):
    """vLLM's CPU backend with our impl; ``get_name()`` stays ``CPU_ATTN`` (inherited)."""

    @staticmethod
    def get_impl_cls() -> type[XAttentionCPUBackendImpl]:
        return XAttentionCPUBackendImpl


# ---- CUDA: vLLM's FLASH_ATTN with XAttention prefill on the Triton kernels (tested with vLLM 0.26) ----

_cuda_kept_total: torch.Tensor | None = None  # one counter on the GPU, added to in place: no sync
_cuda_last_step: Any = None


def cuda_kept_blocks() -> int:
    """Kept blocks of all CUDA sparse prefills so far (synchronises; for benchmarks and tests)."""
    return 0 if _cuda_kept_total is None else int(_cuda_kept_total)


_HAS_CASCADE = "use_cascade" in FlashAttentionMetadata.__dataclass_fields__  # vLLM <= 0.31


class XAttentionCudaMetadataBuilder(FlashAttentionMetadataBuilder):
    """Adds the batch layout on the host (``xattn_layout = (query_start_loc, seq_lens)`` lists) once per
    step, from vLLM's CPU copies, so the attention forward never waits for the GPU. ``seq_lens`` comes
    from ``seq_lens_cpu_upper_bound`` where vLLM has it (exact for prefill rows, the only ones used),
    else from ``seq_lens`` (one copy to the host; vLLM <= 0.29 did the same in ``seq_lens_cpu``)."""

    def build(self, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        meta = super().build(common_prefix_len, common_attn_metadata, fast_build)
        n = common_attn_metadata.num_reqs
        bound = getattr(common_attn_metadata, "seq_lens_cpu_upper_bound", None)
        seq_lens = bound if bound is not None else common_attn_metadata.seq_lens.cpu()
        meta.xattn_layout = (
            common_attn_metadata.query_start_loc_cpu[: n + 1].tolist(),
            seq_lens[:n].tolist(),
        )
        return meta


class XAttentionCudaImpl(FlashAttentionImpl):
    """FlashAttention impl; prefill rows (>= 2 new tokens) whose context has at least ``min_sparse_len``
    tokens run XAttention, reading K/V from the paged cache (chunked prefill and prefix-cache hits
    included). In a step that mixes them with other rows FlashAttention first runs the whole batch and
    the sparse rows are overwritten (correct; the dense work on those rows is not yet saved)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from attention_backend.kernels import PrefillSeq, paged_prefill  # Triton: CUDA hosts only

        self._prefill_seq, self._paged_prefill = PrefillSeq, paged_prefill
        self._tau: torch.Tensor | None = None
        _init_xattn(
            self,
            {
                "attn_type": self.attn_type != AttentionType.DECODER,
                "sliding_window": self.sliding_window not in (None, (-1, -1)),
                "alibi": self.alibi_slopes is not None,
                "softcap": bool(self.logits_soft_cap),
                "sinks": getattr(self, "sinks", None) is not None,
                "kv_cache_dtype": self.kv_cache_dtype != "auto",
            },
        )

    def _threshold(self, layer: Any, device: torch.device) -> torch.Tensor:
        if self._tau is None:
            index = extract_layer_index(layer.layer_name) if self.xattn.has_table else None
            taus = self.xattn.thresholds(self.num_heads, index)
            self._tau = torch.tensor(taus, dtype=torch.float32, device=device)
        return self._tau

    def forward(
        self,
        layer: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: Any,
        output: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        layout = getattr(attn_metadata, "xattn_layout", None)
        if (
            not self.sparse_enabled
            or layout is None
            or (_HAS_CASCADE and attn_metadata.use_cascade)
            or attn_metadata.max_query_len < 2
            or attn_metadata.max_seq_len < self.xattn.min_sparse_len
        ):
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        qsl, seq_lens = layout
        seqs = [
            self._prefill_seq(row=i, q_start=qsl[i], q_len=qsl[i + 1] - qsl[i], k_len=seq_lens[i])
            for i in range(len(seq_lens))
            if qsl[i + 1] - qsl[i] >= 2 and seq_lens[i] >= self.xattn.min_sparse_len
        ]
        if not seqs:
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        if len(seqs) < len(seq_lens):
            super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        # FLASH_ATTN cache (0.26 - 0.33, pinned in vllm_requirements): [pages, Hkv, page, 2D] -> K, V views
        # [pages, page, Hkv, D].
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        if key_cache.shape[1] % self.xattn.block_size:
            _warn_once(
                "page_size",
                "xattn: vLLM's KV block size %d is not a multiple of the XAttention block %d, so the sparse kernel "
                "looks up every key row in the block table (slower: 16.8 vs 14.9 s TTFT at 131K on an H200 with "
                "block size 128); start vLLM with --block-size %d",
                key_cache.shape[1],
                self.xattn.block_size,
                self.xattn.block_size,
            )
        masks = self._paged_prefill(
            query.view(query.shape[0], self.num_heads, self.head_size),
            key_cache,
            value_cache,
            attn_metadata.block_table,
            seqs,
            block_size=self.xattn.block_size,
            stride=self.xattn.stride,
            threshold=self._threshold(layer, query.device),
            scale=self.scale,
            out=output.view(output.shape[0], self.num_heads, self.head_size),
        )
        global _cuda_last_step, _cuda_kept_total
        new_step = _cuda_last_step is not attn_metadata  # every layer of a step shares one metadata object
        _cuda_last_step = attn_metadata
        for s, mask in zip(seqs, masks, strict=True):
            if _cuda_kept_total is None:
                _cuda_kept_total = torch.zeros((), dtype=torch.int64, device=mask.device)
            _cuda_kept_total += mask.sum()
            first, n_kb = (s.k_len - s.q_len) // self.xattn.block_size, mask.shape[-1]
            STATS.causal_blocks += self.num_heads * sum(qb + 1 for qb in range(first, n_kb))
            if new_step:
                STATS.sparse_prefills += 1
                STATS.sparse_tokens += s.q_len
        if new_step:
            counts = {"kept_blocks": None, "density": None, "kept_blocks_on_gpu": "cuda_kept_blocks()"}
            write_marker("attention", "stats", {**STATS.as_dict(), **counts})
        return output


class XAttentionCudaBackend(FlashAttentionBackend):
    """vLLM's FLASH_ATTN backend with our builder and impl; ``get_name()`` stays ``FLASH_ATTN``."""

    @staticmethod
    def get_impl_cls() -> type[XAttentionCudaImpl]:
        return XAttentionCudaImpl

    @staticmethod
    def get_builder_cls() -> type[XAttentionCudaMetadataBuilder]:
        return XAttentionCudaMetadataBuilder
