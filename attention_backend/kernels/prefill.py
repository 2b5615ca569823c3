"""XAttention prefill on CUDA: estimate -> select -> block-sparse attention, all on the device.

``xattention_prefill`` runs one sequence; ``paged_prefill`` runs the prefill rows of a vLLM batch
(varlen, K/V read from the paged cache) and is what the vLLM adapter calls. Lengths come from the host
(vLLM's CPU copies of the batch layout, planned once per batch), so no launch here waits for the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attention_backend.kernels.checks import check_out
from attention_backend.kernels.estimate import EstimateTiles, estimate_block_scores
from attention_backend.kernels.kv_view import PagedKV
from attention_backend.kernels.select import select_blocks_indexed
from attention_backend.kernels.sparse_attention import AttnTiles, block_sparse_attention_indexed


def xattention_prefill(
    q: torch.Tensor,
    kv: PagedKV,
    *,
    block_size: int,
    stride: int,
    threshold: float | torch.Tensor,
    q_offset: int = 0,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    est_tiles: EstimateTiles | None = None,
    attn_tiles: AttnTiles = AttnTiles(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence: ``q: [Lq, Hq, D]`` (positions ``q_offset..k_len-1``) against ``kv``.

    Returns ``(out [Lq, Hq, D], block_mask [Hq, n_qb, n_kb] bool)``; mask rows are the absolute query
    blocks ``q_offset // B .. ceil(k_len / B) - 1``. ``threshold``: scalar or ``[Hq]`` in [0, 1].
    """
    scores = estimate_block_scores(
        q, kv, block_size=block_size, stride=stride, q_offset=q_offset, scale=scale, tiles=est_tiles
    )
    mask, idx, count = select_blocks_indexed(scores, threshold, first_qb=q_offset // block_size)
    out = block_sparse_attention_indexed(
        q, kv, idx, count, block_size=block_size, q_offset=q_offset, scale=scale, out=out, tiles=attn_tiles
    )
    return out, mask


@dataclass(frozen=True)
class PrefillSeq:
    """One prefill row of a batch: its queries are ``query[q_start : q_start + q_len]``, the last
    ``q_len`` of its ``k_len`` context tokens; ``row`` indexes the batch's block table."""

    row: int
    q_start: int
    q_len: int
    k_len: int


def paged_prefill(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    seqs: list[PrefillSeq],
    *,
    block_size: int,
    stride: int,
    threshold: float | torch.Tensor,
    scale: float | None,
    out: torch.Tensor,
) -> list[torch.Tensor]:
    """XAttention for the prefill rows ``seqs`` of a vLLM batch, K/V from the paged cache.

    query: ``[T, Hq, D]`` (the batch's packed queries); key_cache, value_cache:
    ``[num_pages, page_size, Hkv, D]`` (vLLM's FLASH_ATTN cache split into K and V, any strides);
    block_table: ``[num_rows, max_pages]`` int32; out: ``[T, Hq, D]``, only the rows of ``seqs`` are
    written. The keys and values of the new tokens must already be in the cache. Returns each sequence's
    block mask (for metrics and tests).
    """
    check_out(out, tuple(query.shape), query.dtype, query.device)
    if block_table.dim() != 2:
        raise ValueError(f"block_table must be [rows, max_pages], got {tuple(block_table.shape)}")
    masks = []
    for s in seqs:
        if s.q_len < 1 or s.q_len > s.k_len or s.q_start < 0 or s.q_start + s.q_len > query.shape[0]:
            raise ValueError(f"bad prefill row {s} for {query.shape[0]} query tokens")
        kv = PagedKV(key_cache, value_cache, block_table[s.row], s.k_len)
        sl = slice(s.q_start, s.q_start + s.q_len)
        _, mask = xattention_prefill(
            query[sl], kv, block_size=block_size, stride=stride, threshold=threshold,
            q_offset=s.k_len - s.q_len, scale=scale, out=out[sl],
        )
        masks.append(mask)
    return masks
