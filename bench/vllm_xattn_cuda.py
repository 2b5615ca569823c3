"""vLLM (CUDA) attention backend running XAttention prefill on the Triton kernels: the code destined for
the CUDA branch of ``attention_backend/vllm_backend.py``, kept here for the device benchmark until it is
merged there (it imports vLLM, so it must not live elsewhere in ``attention_backend``).

``register()`` overrides vLLM's ``FLASH_ATTN`` backend (FlashAttention 3 on Hopper) with a subclass:
- the metadata builder adds the batch's CPU layout (``query_start_loc_cpu``, prefill ``seq_lens`` from
  ``seq_lens_cpu_upper_bound``, exact for prefill rows) to the metadata, once per step, so the forward
  never waits for the GPU;
- the impl sends every prefill row (more than one new token) whose context has at least
  ``min_sparse_len`` tokens through ``kernels.paged_prefill`` (K/V read from the paged cache through the
  block table: chunked prefill and prefix-cache hits included) and everything else through
  FlashAttention. In a batch that mixes both, FlashAttention runs on the whole batch first and the sparse
  rows are overwritten (correct, not yet cheaper; counted in ``STATS['mixed_batches']``).
Kept / causal block counts accumulate on the GPU (no sync) in ``STATS``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm.config import get_current_vllm_config
from vllm.model_executor.models.utils import extract_layer_index
from vllm.v1.attention.backends.flash_attn import (
    FlashAttentionBackend,
    FlashAttentionImpl,
    FlashAttentionMetadataBuilder,
)
from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

from attention_backend.config import ADDITIONAL_CONFIG_KEY, XAttentionConfig
from attention_backend.kernels import PrefillSeq, paged_prefill

logger = logging.getLogger(__name__)
STATS: dict[str, Any] = {"sparse_rows": 0, "sparse_tokens": 0, "mixed_batches": 0, "kept": None, "causal": 0}


def register() -> None:
    register_backend(AttentionBackendEnum.FLASH_ATTN, f"{__name__}.XAttentionCudaBackend")


class XAttentionCudaMetadataBuilder(FlashAttentionMetadataBuilder):
    def build(self, common_prefix_len: int, common_attn_metadata: Any, fast_build: bool = False) -> Any:
        meta = super().build(common_prefix_len, common_attn_metadata, fast_build)
        n = common_attn_metadata.num_reqs
        qsl = common_attn_metadata.query_start_loc_cpu[: n + 1].tolist()
        bound = common_attn_metadata.seq_lens_cpu_upper_bound
        seq_lens = (bound if bound is not None else common_attn_metadata.seq_lens_cpu)[:n].tolist()
        meta.xattn_layout = (qsl, seq_lens)
        return meta


class XAttentionCudaImpl(FlashAttentionImpl):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = get_current_vllm_config().additional_config or {}
        self.xattn = XAttentionConfig.from_dict(extra.get(ADDITIONAL_CONFIG_KEY) or {})
        self.sparse_enabled = (
            self.xattn.enabled
            and self.sliding_window in (None, (-1, -1))
            and self.alibi_slopes is None
            and not self.logits_soft_cap
            and getattr(self, "sinks", None) is None
        )
        self._tau: torch.Tensor | None = None

    def _threshold(self, layer: Any, device: torch.device) -> torch.Tensor:
        if self._tau is None:
            idx = extract_layer_index(layer.layer_name) if self.xattn.has_table else None
            self._tau = torch.tensor(self.xattn.thresholds(self.num_heads, idx), dtype=torch.float32, device=device)
        return self._tau

    def forward(self, layer: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                kv_cache: torch.Tensor, attn_metadata: Any, output: torch.Tensor, *args: Any, **kwargs: Any):
        layout = getattr(attn_metadata, "xattn_layout", None)
        if (
            not self.sparse_enabled
            or layout is None
            or attn_metadata.use_cascade
            or attn_metadata.max_query_len < 2
            or attn_metadata.max_seq_len < self.xattn.min_sparse_len
        ):
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        qsl, seq_lens = layout
        seqs = [
            PrefillSeq(row=i, q_start=qsl[i], q_len=qsl[i + 1] - qsl[i], k_len=seq_lens[i])
            for i in range(len(seq_lens))
            if qsl[i + 1] - qsl[i] >= 2 and seq_lens[i] >= self.xattn.min_sparse_len
        ]
        if not seqs:
            return super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        if len(seqs) < len(seq_lens):
            STATS["mixed_batches"] += 1
            super().forward(layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        out = output.view(output.shape[0], self.num_heads, self.head_size)
        masks = paged_prefill(
            query.view(query.shape[0], self.num_heads, self.head_size), key_cache, value_cache,
            attn_metadata.block_table, seqs, block_size=self.xattn.block_size, stride=self.xattn.stride,
            threshold=self._threshold(layer, query.device), scale=self.scale, out=out,
        )
        for s, mask in zip(seqs, masks, strict=False):
            kept = mask.sum()
            STATS["kept"] = kept if STATS["kept"] is None else STATS["kept"] + kept
            first, n_kb = (s.k_len - s.q_len) // self.xattn.block_size, mask.shape[-1]
            STATS["causal"] += self.num_heads * sum(qb + 1 for qb in range(first, n_kb))
            STATS["sparse_rows"] += 1
            STATS["sparse_tokens"] += s.q_len
        return output


class XAttentionCudaBackend(FlashAttentionBackend):
    @staticmethod
    def get_impl_cls() -> type[XAttentionCudaImpl]:
        return XAttentionCudaImpl

    @staticmethod
    def get_builder_cls() -> type[XAttentionCudaMetadataBuilder]:
        return XAttentionCudaMetadataBuilder
