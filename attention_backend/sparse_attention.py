"""Exact softmax attention restricted to selected key blocks (the torch path, one query block per step)."""

from __future__ import annotations

import torch

from attention_backend._checks import (
    check_block_geometry,
    check_block_mask,
    check_qkv,
    default_scale,
    query_blocks,
    resolve_q_offset,
)


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    *,
    block_size: int = 128,
    q_offset: int | None = None,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Causal attention of each query over the key blocks its (head, query block) keeps.

    Args:
        q: [Lq, Hq, D] queries at absolute positions ``q_offset ..``; k, v: [Lk, Hkv, D] (GQA: query
            head h reads kv head ``h // (Hq // Hkv)``; K/V are gathered per selected block, never
            repeated whole).
        block_mask: [Hq, nqb, nkb] bool in absolute blocks (as returned by :func:`select_blocks`).
        q_offset: absolute position of ``q[0]``; None = ``Lk - Lq``. scale: default ``D ** -0.5``.
        out: optional [Lq, Hq, D] tensor (dtype of q) to write into.

    Returns:
        [Lq, Hq, D] in q's dtype (computed in fp32): for query position p and head h, softmax over the
        keys j <= p whose block ``j // B`` is kept in ``block_mask[h, p // B - q_offset // B]``.
        The diagonal block must be kept (it holds the query itself), else ValueError.
    """
    lq, lk, hq, hkv, d = check_qkv(q, k, v, check_finite=check_finite)
    check_block_geometry(block_size)
    q_offset = resolve_q_offset(q_offset, lq, lk)
    scale = default_scale(d, scale)
    first_qb, nqb = query_blocks(q_offset, lq, block_size)
    nkb = -(-lk // block_size)
    check_block_mask(block_mask, hq, nqb, nkb, q.device)
    diag_kept = block_mask[:, torch.arange(nqb), torch.arange(first_qb, first_qb + nqb)]
    if not bool(diag_kept.all()):
        raise ValueError("block_mask: expected every diagonal block kept (each query sees itself), got a gap")
    if out is None:
        out = torch.empty_like(q)
    elif tuple(out.shape) != tuple(q.shape) or out.dtype != q.dtype or out.device != q.device:
        raise ValueError(
            f"out: expected shape {tuple(q.shape)}, dtype {q.dtype}, device {q.device}; "
            f"got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    if q.is_cuda:  # the Triton kernel (attention_backend/kernels); never this torch path
        from attention_backend.kernels.dispatch import cuda_block_sparse_attention

        return cuda_block_sparse_attention(
            q, k, v, block_mask, block_size=block_size, q_offset=q_offset, scale=scale, out=out
        )

    group = hq // hkv
    kv_head = torch.arange(hq, device=q.device) // group
    offs = torch.arange(block_size, device=q.device)
    for i in range(nqb):
        qb = first_qb + i
        p0, p1 = max(qb * block_size, q_offset), min((qb + 1) * block_size, q_offset + lq)
        sel = block_mask[:, i, : qb + 1]  # [Hq, qb+1]; nothing above the diagonal is read
        counts = sel.sum(-1)
        n_max = int(counts.max())
        # Selected block ids first (ascending), padding after: sort on "not selected" is stable.
        order = torch.sort((~sel).to(torch.int8), dim=-1, stable=True).indices[:, :n_max]
        slot_ok = torch.arange(n_max, device=q.device)[None, :] < counts[:, None]
        tok = (order[..., None] * block_size + offs).reshape(hq, n_max * block_size)
        tok_ok = (slot_ok[..., None].expand(hq, n_max, block_size).reshape(hq, -1)) & (tok < lk)
        tok = tok.clamp(max=lk - 1)
        k_sel = k[tok, kv_head[:, None]].float()  # [Hq, n*B, D]
        v_sel = v[tok, kv_head[:, None]].float()
        q_blk = q[p0 - q_offset : p1 - q_offset].float().transpose(0, 1)  # [Hq, rows, D]
        logits = torch.bmm(q_blk, k_sel.transpose(1, 2)).mul_(scale)
        pos = torch.arange(p0, p1, device=q.device)
        allowed = tok_ok[:, None, :] & (tok[:, None, :] <= pos[None, :, None])
        logits.masked_fill_(~allowed, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        out[p0 - q_offset : p1 - q_offset] = torch.bmm(probs, v_sel).transpose(0, 1).to(out.dtype)
    return out
