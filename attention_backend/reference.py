"""Slow, obviously-correct references for every XAttention step (float64 by default).

Shared by the CPU tests, the benchmarks and the GPU kernels' tests. The signatures below are stable;
code against them.

Conventions (identical to the public API in ``attention_backend``):
    q: [Lq, Hq, D] queries at absolute positions ``q_offset .. q_offset + Lq - 1``.
    k, v: [Lk, Hkv, D] context at positions ``0 .. Lk - 1``; Hq % Hkv == 0 and query head h reads kv
        head ``h // (Hq // Hkv)``.
    q_offset: None means ``Lk - Lq`` (queries end the context). Query p sees key j iff j <= p.
    Blocks are absolute: token p is in block ``p // B``. Masks and scores are [Hq, nqb, nkb] with
        nkb = ceil(Lk / B) and row i = absolute query block ``q_offset // B + i``.
    scale: softmax scale, None = ``D ** -0.5``.

Functions:
    ref_antidiagonal_logits(q, k, *, stride, q_offset=None, scale=None, dtype=float64)
        -> [Hq, nR, nC]: entry (h, r, c) = scale / S * sum_t q[rS+S-1-t] . k[cS+t] over absolute
        reshaped rows r = 0..ceil((q_offset+Lq)/S)-1 and columns c = 0..ceil(Lk/S)-1, computed tile by
        tile as the antidiagonal of the S x S product (tokens outside q / k count as zero vectors).
    ref_estimate_block_scores(q, k, *, block_size, stride, q_offset=None, scale=None, dtype=float64)
        -> [Hq, nqb, nkb]: softmax of each reshaped row over columns c <= r, rows with no real query
        dropped, summed per (B/S) x (B/S) tile.
    ref_select_blocks(scores, threshold, *, q_block_offset=0) -> [Hq, nqb, nkb] bool: the greedy rule
        (sink + diagonal, then descending score while kept mass < tau * row total; tau = 1: all causal).
    ref_token_mask(block_mask, *, block_size, lq, lk, q_offset=None) -> [Hq, Lq, Lk] bool: the block
        mask expanded to tokens, intersected with the causal mask.
    ref_masked_attention(q, k, v, token_mask, *, scale=None, dtype=float64) -> [Lq, Hq, D].
    ref_block_sparse_attention(q, k, v, block_mask, *, block_size, q_offset=None, scale=None,
        dtype=float64) -> [Lq, Hq, D].
    ref_dense_attention(q, k, v, *, q_offset=None, scale=None, dtype=float64) -> [Lq, Hq, D].
    ref_attention_probs(q, k, *, q_offset=None, scale=None, dtype=float64) -> [Hq, Lq, Lk] true causal
        attention probabilities.
"""

from __future__ import annotations

import torch


def _offset(q_offset: int | None, lq: int, lk: int) -> int:
    return lk - lq if q_offset is None else q_offset


def _expand_kv(k: torch.Tensor, hq: int) -> torch.Tensor:
    return k.repeat_interleave(hq // k.shape[1], dim=1)


def ref_antidiagonal_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    stride: int,
    q_offset: int | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    lq, hq, d = q.shape
    lk = k.shape[0]
    off = _offset(q_offset, lq, lk)
    scale = d**-0.5 if scale is None else scale
    n_rows, n_cols = -(-(off + lq) // stride), -(-lk // stride)
    q_abs = torch.zeros(n_rows * stride, hq, d, dtype=dtype)
    q_abs[off : off + lq] = q.to(dtype)
    k_abs = torch.zeros(n_cols * stride, hq, d, dtype=dtype)
    k_abs[:lk] = _expand_kv(k, hq).to(dtype)
    out = torch.zeros(hq, n_rows, n_cols, dtype=dtype)
    for r in range(n_rows):
        q_tile = q_abs[r * stride : (r + 1) * stride]  # [S, Hq, D]
        for c in range(n_cols):
            k_tile = k_abs[c * stride : (c + 1) * stride]
            tile = torch.einsum("ihd,jhd->hij", q_tile, k_tile)  # [Hq, S, S]
            anti = sum(tile[:, stride - 1 - t, t] for t in range(stride))
            out[:, r, c] = anti * scale / stride
    return out


def ref_estimate_block_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    block_size: int,
    stride: int,
    q_offset: int | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    lq, hq, _ = q.shape
    lk = k.shape[0]
    off = _offset(q_offset, lq, lk)
    logits = ref_antidiagonal_logits(q, k, stride=stride, q_offset=off, scale=scale, dtype=dtype)
    n_rows, n_cols = logits.shape[1:]
    first_qb, last_qb = off // block_size, (off + lq - 1) // block_size
    nkb = -(-lk // block_size)
    per = block_size // stride
    scores = torch.zeros(hq, last_qb - first_qb + 1, nkb, dtype=dtype)
    for r in range(n_rows):
        if not ((r + 1) * stride > off and r * stride < off + lq):
            continue  # no real query in this reshaped row
        row = logits[:, r, : min(r, n_cols - 1) + 1]
        probs = torch.softmax(row, dim=-1)
        for c in range(probs.shape[1]):
            scores[:, r // per - first_qb, c // per] += probs[:, c]
    return scores


def ref_select_blocks(
    scores: torch.Tensor,
    threshold: float | list[float] | torch.Tensor,
    *,
    q_block_offset: int = 0,
) -> torch.Tensor:
    hq, nqb, nkb = scores.shape
    taus = [float(threshold)] * hq if isinstance(threshold, int | float) else [float(t) for t in threshold]
    mask = torch.zeros(hq, nqb, nkb, dtype=torch.bool)
    s = scores.double()
    for h in range(hq):
        for i in range(nqb):
            diag = q_block_offset + i
            row = [float(s[h, i, j]) for j in range(diag + 1)]
            if taus[h] >= 1.0:
                mask[h, i, : diag + 1] = True
                continue
            required = taus[h] * sum(row)
            mask[h, i, 0] = mask[h, i, diag] = True
            kept = row[0] + (row[diag] if diag != 0 else 0.0)
            others = sorted((j for j in range(1, diag)), key=lambda j: -row[j])  # stable on ties
            for j in others:
                if not kept < required:
                    break
                mask[h, i, j] = True
                kept += row[j]
    return mask


def ref_token_mask(
    block_mask: torch.Tensor, *, block_size: int, lq: int, lk: int, q_offset: int | None = None
) -> torch.Tensor:
    off = _offset(q_offset, lq, lk)
    pos = torch.arange(off, off + lq)
    keys = torch.arange(lk)
    rows = pos // block_size - off // block_size
    expanded = block_mask[:, rows][:, :, keys // block_size]  # [Hq, Lq, Lk]
    return expanded & (keys[None, None, :] <= pos[None, :, None])


def ref_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    hq, d = q.shape[1], q.shape[2]
    scale = d**-0.5 if scale is None else scale
    qq = q.to(dtype).transpose(0, 1)
    kk = _expand_kv(k, hq).to(dtype).transpose(0, 1)
    vv = _expand_kv(v, hq).to(dtype).transpose(0, 1)
    logits = (qq @ kk.transpose(1, 2)) * scale
    logits = logits.masked_fill(~token_mask, float("-inf"))
    return (torch.softmax(logits, dim=-1) @ vv).transpose(0, 1)


def ref_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    *,
    block_size: int,
    q_offset: int | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    mask = ref_token_mask(block_mask, block_size=block_size, lq=q.shape[0], lk=k.shape[0], q_offset=q_offset)
    return ref_masked_attention(q, k, v, mask, scale=scale, dtype=dtype)


def _causal(lq: int, lk: int, q_offset: int | None, hq: int) -> torch.Tensor:
    pos = torch.arange(_offset(q_offset, lq, lk), _offset(q_offset, lq, lk) + lq)
    return (torch.arange(lk)[None, :] <= pos[:, None]).expand(hq, lq, lk)


def ref_dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    q_offset: int | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    mask = _causal(q.shape[0], k.shape[0], q_offset, q.shape[1])
    return ref_masked_attention(q, k, v, mask, scale=scale, dtype=dtype)


def ref_attention_probs(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    q_offset: int | None = None,
    scale: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    lq, hq, d = q.shape
    scale = d**-0.5 if scale is None else scale
    logits = (q.to(dtype).transpose(0, 1) @ _expand_kv(k, hq).to(dtype).permute(1, 2, 0)) * scale
    logits = logits.masked_fill(~_causal(lq, k.shape[0], q_offset, hq), float("-inf"))
    return torch.softmax(logits, dim=-1)
