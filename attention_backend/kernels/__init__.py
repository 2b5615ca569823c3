"""Triton kernels of XAttention for CUDA (H100/H200 class GPUs); imported only when CUDA is used.

The function API the rest of ``attention_backend`` calls (shapes in each docstring):

- ``estimate_block_scores(q, kv, *, block_size, stride, q_offset=0, scale=None, out=None, tiles)
  -> [Hq, n_qb, n_kb] fp32``
- ``select_blocks_indexed(scores, threshold, *, first_qb) -> (mask, idx, count)``
- ``block_sparse_attention_indexed(q, kv, idx, count, *, block_size, q_offset=0, scale=None, out=None, tiles)``
  with ``mask_to_index(block_mask, first_qb) -> (idx, count)`` for an arbitrary bool block mask
- ``xattention_prefill(q, kv, *, block_size, stride, threshold, q_offset=0, scale=None, out=None, est_tiles,
  attn_tiles) -> (out, block_mask)``
- ``paged_prefill(query, key_cache, value_cache, block_table, seqs, *, block_size, stride, threshold,
  scale, out)``: the prefill rows of a vLLM batch, K/V read from the paged cache; ``paged_select`` +
  ``paged_attend`` are its two halves (the vLLM adapter decides between them, dense or sparse, per row).
- ``precompile(query, key_cache, value_cache, *, ..., min_len, max_len)``: compile all of the above for rows of
  ``min_len..max_len`` tokens ahead of the first request (``kernels.warmup``).

``kv`` is a ``PagedKV`` (``PagedKV.from_contiguous(k, v)`` for ``k, v: [Lk, Hkv, D]``). Query rows of
score/mask tensors are ABSOLUTE query blocks ``q_offset // B .. ceil(k_len / B) - 1``. Inputs are fp16 or
bf16 CUDA tensors (CPU tensors only under ``TRITON_INTERPRET=1``); bad input raises ValueError before any
launch. Nothing here synchronises with the host. ``EstimateTiles`` / ``AttnTiles`` are launch shapes
(defaults: the fastest of a sweep on an H200, see bench/results/xattn_kernels/notes.md). ``kernels.dispatch`` holds the
CUDA side of the public functions of ``attention_backend`` (same signatures, contiguous K/V).
"""

from attention_backend.kernels.estimate import EstimateTiles, estimate_block_scores
from attention_backend.kernels.kv_view import PagedKV
from attention_backend.kernels.prefill import (
    PrefillSeq,
    Selection,
    causal_blocks,
    paged_attend,
    paged_prefill,
    paged_select,
    xattention_prefill,
)
from attention_backend.kernels.select import mask_to_index, select_blocks_indexed
from attention_backend.kernels.sparse_attention import AttnTiles, block_sparse_attention_indexed
from attention_backend.kernels.warmup import precompile

__all__ = [
    "AttnTiles",
    "EstimateTiles",
    "PagedKV",
    "PrefillSeq",
    "Selection",
    "block_sparse_attention_indexed",
    "causal_blocks",
    "estimate_block_scores",
    "mask_to_index",
    "paged_attend",
    "paged_prefill",
    "paged_select",
    "precompile",
    "select_blocks_indexed",
    "xattention_prefill",
]
