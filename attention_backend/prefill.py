"""XAttention prefill: estimate, select, attend (the torch path behind the public API)."""

from __future__ import annotations

import torch

from attention_backend._checks import check_qkv, query_blocks, resolve_q_offset
from attention_backend.config import XAttentionConfig
from attention_backend.estimate import estimate_block_scores
from attention_backend.select import select_blocks
from attention_backend.sparse_attention import block_sparse_attention


def xattention_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    config: XAttentionConfig,
    *,
    q_offset: int | None = None,
    layer: int | None = None,
    scale: float | None = None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-sparse causal prefill attention with antidiagonal block selection.

    Args:
        q: [Lq, Hq, D], the queries at absolute positions ``q_offset .. q_offset + Lq - 1``.
        k, v: [Lk, Hkv, D], the context at positions ``0 .. Lk - 1`` (Hq a multiple of Hkv).
        config: block size, stride, tau (a float, or a [layers][Hq] table, then ``layer`` is needed).
        q_offset: None (default) = ``Lk - Lq``: the queries are the last Lq tokens of the context;
            a chunk of a chunked prefill passes the full context so far as k, v and its queries as q.
        layer: row of the threshold table. scale: softmax scale, default ``D ** -0.5``.
        check_finite: refuse NaN / inf in q and k (ValueError; off CUDA). The vLLM CPU adapter passes False:
            one request's bad activations then give NaN output for that request, as dense attention would,
            instead of stopping the engine for every tenant.

    Returns:
        (out [Lq, Hq, D] in q's dtype, block_mask [Hq, nqb, ceil(Lk / B)] bool), where row i of the
        mask is absolute query block ``q_offset // B + i`` (nqb = ceil(Lq / B) when ``q_offset % B == 0``).
        Chunking is exact when chunks start at multiples of B; a query block split across chunks is
        estimated from the queries each chunk holds. No chunked (causal) computation can match one shot
        there: one shot selects a block's key blocks with ALL its queries, including those after the
        chunk boundary (tests/attention_backend/test_xattn_attention.py shows the dependence).
    """
    if not isinstance(config, XAttentionConfig):
        raise ValueError(f"config: expected an XAttentionConfig, got {type(config).__name__}")
    lq, lk, hq, _, _ = check_qkv(q, k, v, check_finite=check_finite)
    q_offset = resolve_q_offset(q_offset, lq, lk)
    tau = config.thresholds(hq, layer)
    if q.is_cuda:  # the Triton kernels (attention_backend/kernels); never the torch path
        from attention_backend.kernels.dispatch import cuda_xattention_prefill

        return cuda_xattention_prefill(
            q, k, v, block_size=config.block_size, stride=config.stride, threshold=tau,
            q_offset=q_offset, scale=scale,
        )
    scores = estimate_block_scores(
        q,
        k,
        block_size=config.block_size,
        stride=config.stride,
        q_offset=q_offset,
        scale=scale,
        chunk_tokens=config.chunk_tokens,
        check_finite=False,  # checked above (or not asked for)
    )
    first_qb, _ = query_blocks(q_offset, lq, config.block_size)
    mask = select_blocks(scores, tau, q_block_offset=first_qb, check_finite=False)  # finite q, k: finite scores
    out = block_sparse_attention(
        q, k, v, mask, block_size=config.block_size, q_offset=q_offset, scale=scale, check_finite=False
    )
    return out, mask
