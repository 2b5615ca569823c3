"""Threshold block selection (XAttention's ``find_blocks_chunked``, prefill, causal)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def select_blocks(
    scores: torch.Tensor,
    threshold: float | Sequence[float] | torch.Tensor,
    *,
    q_block_offset: int = 0,
    check_finite: bool = True,
) -> torch.Tensor:
    """Keep, per head and query block, the fewest key blocks that reach ``tau`` of the row's mass.

    Args:
        scores: [Hq, nqb, nkb] estimated block masses (from :func:`estimate_block_scores`); row i is
            absolute query block ``q_block_offset + i``, whose diagonal key block has the same index.
        threshold: tau in [0, 1], one float or one per query head ([Hq]).
        q_block_offset: absolute index of the first query block.

    Returns:
        block_mask: [Hq, nqb, nkb] bool. Always keeps the sink (key block 0) and the diagonal block;
        then adds the other causal blocks by descending score while the kept mass (sink + diagonal +
        blocks added so far) is below ``tau * row total``: the block that crosses the threshold is kept.
        Never keeps a block above the diagonal. tau = 1 keeps every causal block, including blocks whose
        estimated mass is 0 (tau = 1 means dense); tau = 0 keeps only sink and diagonal.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3 or not scores.is_floating_point():
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores: expected a float tensor [Hq, nqb, nkb], got {got}")
    hq, nqb, nkb = scores.shape
    if isinstance(q_block_offset, bool) or not isinstance(q_block_offset, int) or q_block_offset < 0:
        raise ValueError(f"q_block_offset: expected a non-negative int, got {q_block_offset!r}")
    if q_block_offset + nqb > nkb:
        raise ValueError(
            f"scores: expected nkb >= q_block_offset + nqb = {q_block_offset + nqb} (causal), got nkb={nkb}"
        )
    tau = _thresholds(threshold, hq, scores.device)
    if scores.is_cuda:  # the Triton kernel (attention_backend/kernels); never this torch path
        from attention_backend.kernels.dispatch import cuda_select_blocks

        return cuda_select_blocks(scores, tau, q_block_offset=q_block_offset)

    if check_finite and (not bool(torch.isfinite(scores).all()) or bool((scores < 0).any())):  # torch path only
        raise ValueError("scores: expected finite non-negative block masses, got NaN, inf or negative values")
    dev = scores.device
    diag = torch.arange(q_block_offset, q_block_offset + nqb, device=dev)
    col = torch.arange(nkb, device=dev)
    causal = (col[None, :] <= diag[:, None]).expand(hq, nqb, nkb)
    forced = (col[None, :] == 0) | (col[None, :] == diag[:, None])
    forced = forced.expand(hq, nqb, nkb)

    s = scores.double().masked_fill(~causal, 0.0)
    total = s.sum(-1, keepdim=True)
    required = total * tau[:, None, None]
    forced_mass = s.masked_fill(~forced, 0.0).sum(-1, keepdim=True)
    # Candidates sorted by descending score; non-causal and forced blocks sort last and are never added.
    cand = s.masked_fill(forced | ~causal, float("-inf"))
    sorted_vals, order = torch.sort(cand, dim=-1, descending=True, stable=True)
    finite = torch.isfinite(sorted_vals)
    vals = sorted_vals.masked_fill(~finite, 0.0)
    exclusive = torch.cumsum(vals, -1).roll(1, -1)
    exclusive[..., 0] = 0.0
    kept_before = forced_mass + exclusive
    take_sorted = finite & (kept_before < required)
    mask = torch.zeros(hq, nqb, nkb, dtype=torch.bool, device=dev)
    mask.scatter_(-1, order, take_sorted)
    mask |= forced
    dense_heads = tau >= 1.0
    if bool(dense_heads.any()):
        mask[dense_heads] = causal[dense_heads]
    return mask & causal


def _thresholds(threshold: float | Sequence[float] | torch.Tensor, hq: int, device: torch.device) -> torch.Tensor:
    if isinstance(threshold, int | float) and not isinstance(threshold, bool):
        values = torch.full((hq,), float(threshold), dtype=torch.float64)
    else:
        values = torch.as_tensor(threshold, dtype=torch.float64).flatten().cpu()
        if values.numel() != hq:
            raise ValueError(f"threshold: expected a float or {hq} values (one per query head), got {values.numel()}")
    bad = [float(x) for x in values if not (math.isfinite(float(x)) and 0.0 <= float(x) <= 1.0)]
    if bad:
        raise ValueError(f"threshold: expected tau in [0, 1], got {bad[:4]}")
    return values.to(device)
