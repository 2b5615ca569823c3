"""The CUDA side of the public functions in ``attention_backend``: same arguments, contiguous K/V.

``attention_backend.estimate_block_scores`` & co. call these for CUDA tensors (no silent fallback to the
torch path). Keys past the queries (``q_offset + Lq < Lk``) are causally invisible: the kernels run on
the first ``q_offset + Lq`` keys and the extra key-block columns are returned as 0 / False.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attention_backend.kernels.estimate import estimate_block_scores
from attention_backend.kernels.kv_view import PagedKV
from attention_backend.kernels.select import mask_to_index, select_blocks_indexed
from attention_backend.kernels.sparse_attention import block_sparse_attention_indexed


def _visible_kv(k: torch.Tensor, v: torch.Tensor | None, k_end: int) -> PagedKV:
    k = k[:k_end].contiguous() if k.shape[0] != k_end else k
    v = k if v is None else (v[:k_end].contiguous() if v.shape[0] != k_end else v)
    return PagedKV.from_contiguous(k, v)


def _pad_cols(t: torch.Tensor, n_kb: int) -> torch.Tensor:
    return t if t.shape[-1] == n_kb else F.pad(t, (0, n_kb - t.shape[-1]))


def cuda_estimate_block_scores(
    q: torch.Tensor, k: torch.Tensor, *, block_size: int, stride: int, q_offset: int, scale: float
) -> torch.Tensor:
    """``q: [Lq, Hq, D]``, ``k: [Lk, Hkv, D]`` -> ``[Hq, nqb, ceil(Lk / B)]`` fp32 (Triton)."""
    k_end = q_offset + q.shape[0]
    kv = _visible_kv(k, None, k_end)
    scores = estimate_block_scores(q, kv, block_size=block_size, stride=stride, q_offset=q_offset, scale=scale)
    return _pad_cols(scores, -(-k.shape[0] // block_size))


def cuda_select_blocks(
    scores: torch.Tensor, threshold: float | Sequence[float] | torch.Tensor, *, q_block_offset: int
) -> torch.Tensor:
    """``scores: [Hq, nqb, nkb]`` -> bool mask of the same shape (Triton, no host sync)."""
    tau = threshold if isinstance(threshold, int | float | torch.Tensor) else torch.tensor(list(threshold))
    mask, _, _ = select_blocks_indexed(scores.float(), tau, first_qb=q_block_offset)
    return mask


def cuda_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_mask: torch.Tensor,
    *,
    block_size: int,
    q_offset: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``q: [Lq, Hq, D]``, ``k, v: [Lk, Hkv, D]``, ``block_mask: [Hq, nqb, ceil(Lk / B)]`` -> out (Triton)."""
    k_end = q_offset + q.shape[0]
    kv = _visible_kv(k, v, k_end)
    idx, count = mask_to_index(block_mask[..., : -(-k_end // block_size)], first_qb=q_offset // block_size)
    return block_sparse_attention_indexed(
        q, kv, idx, count, block_size=block_size, q_offset=q_offset, scale=scale, out=out
    )


def cuda_xattention_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    stride: int,
    threshold: float | Sequence[float] | torch.Tensor,
    q_offset: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate, select and attend in four launches; returns ``(out [Lq, Hq, D], mask [Hq, nqb, nkb])``."""
    k_end = q_offset + q.shape[0]
    kv = _visible_kv(k, v, k_end)
    tau = threshold if isinstance(threshold, int | float | torch.Tensor) else torch.tensor(list(threshold))
    scores = estimate_block_scores(q, kv, block_size=block_size, stride=stride, q_offset=q_offset, scale=scale)
    mask, idx, count = select_blocks_indexed(scores, tau, first_qb=q_offset // block_size)
    out = block_sparse_attention_indexed(
        q, kv, idx, count, block_size=block_size, q_offset=q_offset, scale=scale, out=out
    )
    return out, _pad_cols(mask, -(-k.shape[0] // block_size))
