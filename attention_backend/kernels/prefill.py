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
    attn_tiles: AttnTiles | None = None,
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


@dataclass(frozen=True)
class Selection:
    """One prefill row's selected blocks: ``mask [Hq, n_qb, n_kb]`` bool, ``idx`` (kept key blocks,
    ascending) and ``count [Hq, n_qb]`` int32, as ``select_blocks_indexed`` returns them."""

    mask: torch.Tensor
    idx: torch.Tensor
    count: torch.Tensor


def causal_blocks(s: PrefillSeq, block_size: int) -> int:
    """Causal (query block, key block) pairs of one head for row ``s``: what density is a share of."""
    first, n_kb = (s.k_len - s.q_len) // block_size, -(-s.k_len // block_size)
    return (n_kb * (n_kb + 1) - first * (first + 1)) // 2  # sum of qb + 1 for qb in [first, n_kb)


def _check_rows(query: torch.Tensor, block_table: torch.Tensor, seqs: list[PrefillSeq]) -> None:
    if block_table.dim() != 2:
        raise ValueError(f"block_table must be [rows, max_pages], got {tuple(block_table.shape)}")
    for s in seqs:
        if s.q_len < 1 or s.q_len > s.k_len or s.q_start < 0 or s.q_start + s.q_len > query.shape[0]:
            raise ValueError(f"bad prefill row {s} for {query.shape[0]} query tokens")


def paged_select(
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
    fp8: bool = False,
) -> list[Selection]:
    """Estimate and select for the prefill rows ``seqs`` of a vLLM batch (no host sync): the first half
    of :func:`paged_prefill`, so a caller can look at the densities before paying for attention.
    ``fp8``: the estimation GEMM on per-head scaled e4m3 copies (``estimate_block_scores``)."""
    _check_rows(query, block_table, seqs)
    selections = []
    for s in seqs:
        kv = PagedKV(key_cache, value_cache, block_table[s.row], s.k_len)
        q = query[s.q_start : s.q_start + s.q_len]
        q_offset = s.k_len - s.q_len
        scores = estimate_block_scores(
            q, kv, block_size=block_size, stride=stride, q_offset=q_offset, scale=scale, fp8=fp8
        )
        selections.append(Selection(*select_blocks_indexed(scores, threshold, first_qb=q_offset // block_size)))
    return selections


def paged_attend(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    seqs: list[PrefillSeq],
    selections: list[Selection],
    *,
    block_size: int,
    scale: float | None,
    out: torch.Tensor,
) -> None:
    """Block-sparse attention of the rows ``seqs`` over their ``selections``; writes their rows of ``out``."""
    check_out(out, tuple(query.shape), query.dtype, query.device)
    _check_rows(query, block_table, seqs)
    for s, sel in zip(seqs, selections, strict=True):
        kv = PagedKV(key_cache, value_cache, block_table[s.row], s.k_len)
        rows = slice(s.q_start, s.q_start + s.q_len)
        block_sparse_attention_indexed(
            query[rows], kv, sel.idx, sel.count, block_size=block_size, q_offset=s.k_len - s.q_len,
            scale=scale, out=out[rows],
        )


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
    sels = paged_select(
        query, key_cache, value_cache, block_table, seqs,
        block_size=block_size, stride=stride, threshold=threshold, scale=scale,
    )
    paged_attend(query, key_cache, value_cache, block_table, seqs, sels, block_size=block_size, scale=scale, out=out)
    return [s.mask for s in sels]
