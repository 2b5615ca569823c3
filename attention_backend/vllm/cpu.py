"""vLLM's CPU attention backend (``CPU_ATTN``) with XAttention for long prefills.

The metadata builder plans once per engine step (:class:`CPUStepPlan`, attached to the step's metadata):
which requests take the sparse path, and a sub-metadata for the other rows, so vLLM's own kernel runs on
those rows only. The impl runs per layer from that plan. Registered by ``attention_backend.vllm.plugin``.
Version differences handled here: ``cpu_attn_get_scheduler_metadata`` takes ``kv_cache_dtype`` from
vLLM 0.27.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from vllm import _custom_ops as ops
from vllm import envs
from vllm.model_executor.models.utils import extract_layer_index
from vllm.v1.attention.backend import AttentionType
from vllm.v1.attention.backends.cpu_attn import (
    CPUAttentionBackend,
    CPUAttentionBackendImpl,
    CPUAttentionMetadataBuilder,
)

from attention_backend.batch_plan import BatchPlan, RowPath, plan_batch
from attention_backend.prefill import xattention_prefill
from attention_backend.vllm.common import STATS, config_from_vllm, init_xattn, publish_stats, warn_once

_SCHEDULER_TAKES_KV_DTYPE = (
    "kv_cache_dtype" in inspect.signature(ops.cpu_attn_get_scheduler_metadata).parameters
)
"""vLLM >= 0.27 builds the CPU scheduler metadata with the cache dtype; 0.26 has no such parameter."""


@dataclass
class CPUStepPlan:
    """One engine step's plan, shared by every layer of the step (it rides on the step's metadata).

    ``dense_rows`` / ``dense_metadata``: the token rows of the requests that are not SPARSE and a
    ``CPUAttentionMetadata`` for them alone (None when every request is sparse). ``counted`` is set by
    the first layer that acts on the plan, so requests are counted once per step."""

    plan: BatchPlan
    dense_rows: torch.Tensor | None = None
    dense_metadata: Any = None
    counted: bool = False


class XAttentionCPUMetadataBuilder(CPUAttentionMetadataBuilder):
    """vLLM's CPU builder; adds ``xattn_step`` (a :class:`CPUStepPlan`, or None) to every metadata."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._xattn = config_from_vllm(self.vllm_config)
        self._kv_cache_dtype = self.vllm_config.cache_config.cache_dtype

    def build(self, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        meta = super().build(common_prefix_len, common_attn_metadata, fast_build)
        meta.xattn_step = None
        if (
            not self._xattn.enabled
            or meta.causal is not True
            or meta.max_query_len < 2
            or meta.max_seq_len < self._xattn.min_sparse_len
        ):
            return meta
        n = meta.num_actual_tokens
        qsl = [min(int(x), n) for x in meta.query_start_loc.tolist()]
        plan = plan_batch(qsl, [int(x) for x in meta.seq_lens.tolist()], self._xattn.min_sparse_len)
        step = CPUStepPlan(plan)
        if plan.has_sparse and not plan.all_sparse:
            step.dense_rows, step.dense_metadata = self._dense_subset(meta, plan)
        meta.xattn_step = step
        return meta

    def _dense_subset(self, meta: Any, plan: BatchPlan) -> tuple[torch.Tensor, Any]:
        """Token rows and a ``CPUAttentionMetadata`` for the requests of ``plan`` that are not SPARSE."""
        reqs = [r for r in plan.requests if r.path is not RowPath.SPARSE]
        idx = torch.tensor([r.index for r in reqs], dtype=torch.long)
        rows = torch.cat([torch.arange(r.start, r.end) for r in reqs])
        lens = [r.end - r.start for r in reqs]
        qsl = torch.zeros(len(reqs) + 1, dtype=meta.query_start_loc.dtype)
        qsl[1:] = torch.cumsum(torch.tensor(lens), 0)
        seq_lens = meta.seq_lens[idx]
        kv_dtype = {"kv_cache_dtype": self._kv_cache_dtype} if _SCHEDULER_TAKES_KV_DTYPE else {}
        sub = dataclasses.replace(
            meta,
            num_actual_tokens=int(rows.numel()),
            max_query_len=max(lens),
            query_start_loc=qsl,
            max_seq_len=int(seq_lens.max()),
            seq_lens=seq_lens,
            block_table=meta.block_table[idx],
            slot_mapping=meta.slot_mapping[rows],
            scheduler_metadata=ops.cpu_attn_get_scheduler_metadata(
                num_reqs=len(reqs),
                num_heads=self.num_heads,
                num_kv_heads=self.num_kv_heads,
                head_dim=self.head_dim,
                seq_lens=seq_lens,
                dtype=self.dtype,
                query_start_loc=qsl,
                causal=True,
                sliding_window_size=self.window_size,
                isa=self.isa,
                enable_kv_split=envs.VLLM_CPU_ATTN_SPLIT_KV,
                **kv_dtype,
            ),
        )
        return rows, sub


def _count_step(step: CPUStepPlan) -> None:
    """Count the step's requests by path (once per step) and log the cached-context fallback once."""
    if step.counted:
        return
    step.counted = True
    plan = step.plan
    STATS.sparse_prefills += len(plan.of(RowPath.SPARSE))
    STATS.sparse_tokens += sum(r.end - r.start for r in plan.of(RowPath.SPARSE))
    STATS.dense_short_prefills += len(plan.of(RowPath.DENSE_SHORT))
    fallback = plan.of(RowPath.FALLBACK_CACHED)
    STATS.fallback_cached_prefills += len(fallback)
    if fallback:
        warn_once(
            "fallback",
            "xattn: a long prefill attends to cached tokens; vLLM's CPU KV cache is packed per instruction "
            "set and is not read back, so such prefills run DENSE (counted in attention.stats "
            "fallback_cached_prefills; logged once)",
        )
    if plan.has_sparse or fallback:
        publish_stats()


class XAttentionCPUBackendImpl(CPUAttentionBackendImpl):
    """vLLM's CPU attention impl with XAttention for long prefills.

    Decodes, short prefills and prefills that attend to cached context run through vLLM's own kernel
    (``super().forward``, on their rows only); a prefill whose context has at least ``min_sparse_len``
    tokens, all of them in this forward's key/value, runs :func:`xattention_prefill`. Layers with features
    XAttention does not model (sliding window, ALiBi, soft-cap, sinks, non-decoder attention) stay dense.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layer_index: int | None = None
        init_xattn(
            self,
            {
                "attn_type": self.attn_type != AttentionType.DECODER,
                "sliding_window": self.sliding_window not in (None, -1),
                "alibi": self.alibi_slopes is not None,
                "softcap": bool(self.logits_soft_cap),
                "sinks": self.sinks is not None,
                "kv_sharing": self.kv_sharing_target_layer_name is not None,
            },
            fp8_estimation=False,
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
        step: CPUStepPlan | None = getattr(attn_metadata, "xattn_step", None)
        if not self.sparse_enabled or step is None or key is None:
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        _count_step(step)
        if not step.plan.has_sparse:
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        if step.dense_rows is not None:
            rows = step.dense_rows
            sub_out = torch.empty((rows.numel(), self.num_heads, self.head_size), dtype=out.dtype)
            super().forward(
                layer, query[rows], key[rows], value[rows], kv_cache, step.dense_metadata, sub_out, *args, **kwargs
            )
            out[rows] = sub_out
        layer_index = self._layer(layer)
        for req in step.plan.of(RowPath.SPARSE):
            rows = slice(req.start, req.end)
            result, mask = xattention_prefill(
                query[rows], key[rows], value[rows], self.xattn, layer=layer_index, scale=self.scale,
                check_finite=False,  # one request's NaN activations must not stop the engine (NaN out, as dense)
            )
            out[rows] = result.to(out.dtype)
            n_blocks = mask.shape[1]
            STATS.kept_blocks += int(mask.sum())
            STATS.causal_blocks += self.num_heads * n_blocks * (n_blocks + 1) // 2
        publish_stats()
        return output

    def _layer(self, layer: Any) -> int | None:
        if not self.xattn.has_table:
            return None
        if self._layer_index is None:
            self._layer_index = extract_layer_index(layer.layer_name)
        return self._layer_index


class XAttentionCPUBackend(CPUAttentionBackend):
    """vLLM's CPU backend with our builder and impl; ``get_name()`` stays ``CPU_ATTN`` (inherited)."""

    @staticmethod
    def get_impl_cls() -> type[XAttentionCPUBackendImpl]:
        return XAttentionCPUBackendImpl

    @staticmethod
    def get_builder_cls() -> type[XAttentionCPUMetadataBuilder]:
        return XAttentionCPUMetadataBuilder
