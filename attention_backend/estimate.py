"""Antidiagonal block-score estimation (the torch path: vectorised, chunked over query blocks)."""

from __future__ import annotations

import torch

from attention_backend._checks import (
    check_block_geometry,
    check_qkv,
    default_scale,
    query_blocks,
    resolve_q_offset,
)


def estimate_block_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    block_size: int = 128,
    stride: int = 8,
    q_offset: int | None = None,
    scale: float | None = None,
    chunk_tokens: int = 4096,
    check_finite: bool = True,
) -> torch.Tensor:
    """Estimated attention mass of every (query block, key block) pair, per query head.

    Args:
        q: [Lq, Hq, D] queries at absolute positions ``q_offset .. q_offset + Lq - 1``.
        k: [Lk, Hkv, D] keys at positions ``0 .. Lk - 1`` (GQA: query head h reads kv head
            ``h // (Hq // Hkv)``; K is never repeated).
        block_size: B. stride: S, a divisor of B.
        q_offset: absolute position of ``q[0]``; None = ``Lk - Lq`` (the queries end the context).
        scale: softmax scale, default ``D ** -0.5``.
        chunk_tokens: query tokens per step (peak memory ~ Hq * chunk/S * Lk/S * 4 bytes).

    Returns:
        scores: [Hq, nqb, nkb] float32 with nkb = ceil(Lk / B) and nqb the number of absolute query
        blocks touched by the queries (``ceil(Lq / B)`` when ``q_offset % B == 0``); row i is absolute
        query block ``q_offset // B + i``. Reshaped query row r (absolute tokens rS .. rS+S-1) takes
        ``q[rS+S-1-t]``, reshaped key column c takes ``k[cS+t]`` (t = 0..S-1, absent tokens are zero);
        their dot products, times ``scale / S``, are softmaxed in fp32 over columns c <= r, and each
        (B/S)x(B/S) tile of probabilities is summed into one block score. Each query row that holds at
        least one real query contributes a total mass of 1 to its block row; blocks above the diagonal
        score 0.
    """
    lq, lk, hq, hkv, d = check_qkv(q, k, check_finite=check_finite)
    check_block_geometry(block_size, stride)
    q_offset = resolve_q_offset(q_offset, lq, lk)
    scale = default_scale(d, scale)
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens: expected a positive int, got {chunk_tokens!r}")
    if q.is_cuda:  # the Triton kernels (attention_backend/kernels); never this torch path
        from attention_backend.kernels.dispatch import cuda_estimate_block_scores

        return cuda_estimate_block_scores(q, k, block_size=block_size, stride=stride, q_offset=q_offset, scale=scale)

    group = hq // hkv
    rows_per_block = block_size // stride
    first_qb, nqb = query_blocks(q_offset, lq, block_size)
    nkb = -(-lk // block_size)
    q_end = q_offset + lq

    k_resh = reshape_keys(k, stride, nkb * block_size)

    scores = torch.zeros(hq, nqb, nkb, dtype=torch.float32, device=q.device)
    blocks_per_chunk = max(1, -(-chunk_tokens // block_size))
    for c0 in range(0, nqb, blocks_per_chunk):
        c1 = min(nqb, c0 + blocks_per_chunk)
        abs0, abs1 = first_qb + c0, first_qb + c1
        tok0, tok1 = abs0 * block_size, abs1 * block_size
        n_rows = (tok1 - tok0) // stride
        q_resh = reshape_queries(q, stride, q_offset, tok0, tok1)
        n_cols = abs1 * rows_per_block  # causal: no column beyond the last row of this chunk
        logits = torch.bmm(
            q_resh.view(hkv, group * n_rows, stride * d),
            k_resh[:, :n_cols].transpose(1, 2),
        ).view(hq, n_rows, n_cols)
        logits.mul_(scale / stride)
        row_abs = torch.arange(tok0 // stride, tok1 // stride, device=q.device)
        col_abs = torch.arange(n_cols, device=q.device)
        logits.masked_fill_(col_abs[None, :] > row_abs[:, None], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        # A reshaped row counts only if it holds at least one real query token.
        row_valid = ((row_abs + 1) * stride > q_offset) & (row_abs * stride < q_end)
        probs.mul_(row_valid[None, :, None].to(probs.dtype))
        block = probs.view(hq, c1 - c0, rows_per_block, abs1, rows_per_block).sum(dim=(2, 4))
        scores[:, c0:c1, :abs1] = block  # abs1 <= nkb because the queries end by Lk
    return scores


def reshape_keys(k: torch.Tensor, stride: int, padded_len: int) -> torch.Tensor:
    """k: [Lk, Hkv, D] -> [Hkv, padded_len / S, S*D] fp32; column c concatenates k[cS], ..., k[cS+S-1]
    (positions >= Lk are zero)."""
    lk, hkv, d = k.shape
    k_pad = k.new_zeros(padded_len, hkv, d, dtype=torch.float32)
    k_pad[:lk] = k.float()
    return k_pad.view(padded_len // stride, stride, hkv, d).permute(2, 0, 1, 3).reshape(hkv, -1, stride * d)


def reshape_queries(q: torch.Tensor, stride: int, q_offset: int, tok0: int, tok1: int) -> torch.Tensor:
    """Queries of absolute positions [tok0, tok1) (multiples of S) -> [Hq, (tok1-tok0)/S, S*D] fp32.

    Row r concatenates q[rS+S-1], ..., q[rS] (reversed: the antidiagonal pairing with the key columns);
    positions outside ``[q_offset, q_offset + Lq)`` are zero.
    """
    lq, hq, d = q.shape
    q_pad = q.new_zeros(tok1 - tok0, hq, d, dtype=torch.float32)
    lo, hi = max(tok0, q_offset), min(tok1, q_offset + lq)
    if hi > lo:
        q_pad[lo - tok0 : hi - tok0] = q[lo - q_offset : hi - q_offset].float()
    n_rows = (tok1 - tok0) // stride
    return q_pad.view(n_rows, stride, hq, d).flip(1).permute(2, 0, 1, 3).reshape(hq, n_rows, stride * d)
