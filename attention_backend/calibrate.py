"""Per-head threshold calibration: tau is a share of the *estimated* mass, the target is a share of the
*true* attention mass, so each (layer, head) gets the smallest tau whose selection keeps the target.

This is the idea of the official ``profile_threshold`` (mit-han-lab/x-attention), done by bisection on
the quantity we want: for one head, the mean over query tokens of the true attention probability that
falls in the kept blocks ("attention recall") is monotone in tau, so the smallest tau that reaches the
target is found to within ``tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attention_backend._checks import (
    check_block_geometry,
    check_qkv,
    default_scale,
    query_blocks,
    resolve_q_offset,
)
from attention_backend.config import XAttentionConfig
from attention_backend.estimate import estimate_block_scores
from attention_backend.select import select_blocks


def true_block_mass(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    block_size: int = 128,
    q_offset: int | None = None,
    scale: float | None = None,
    chunk_tokens: int = 1024,
) -> torch.Tensor:
    """True causal attention probability of every query token on every key block.

    q: [Lq, Hq, D], k: [Lk, Hkv, D] (conventions of :mod:`attention_backend.reference`).
    Returns [Hq, Lq, ceil(Lk / B)] float32; each row sums to 1.
    """
    lq, lk, hq, hkv, d = check_qkv(q, k)
    check_block_geometry(block_size)
    q_offset = resolve_q_offset(q_offset, lq, lk)
    scale = default_scale(d, scale)
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens: expected a positive int, got {chunk_tokens!r}")
    nkb = -(-lk // block_size)
    group = hq // hkv
    kk = k.float().permute(1, 2, 0)  # [Hkv, D, Lk]
    out = torch.empty(hq, lq, nkb, dtype=torch.float32, device=q.device)
    keys = torch.arange(lk, device=q.device)
    for a in range(0, lq, chunk_tokens):
        b = min(lq, a + chunk_tokens)
        qq = q[a:b].float().permute(1, 0, 2).reshape(hkv, group * (b - a), d)
        logits = torch.bmm(qq, kk).view(hq, b - a, lk).mul_(scale)
        pos = torch.arange(q_offset + a, q_offset + b, device=q.device)
        logits.masked_fill_(keys[None, None, :] > pos[None, :, None], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        padded = torch.nn.functional.pad(probs, (0, nkb * block_size - lk))
        out[:, a:b] = padded.view(hq, b - a, nkb, block_size).sum(-1)
    return out


def token_recall(
    mass: torch.Tensor, block_mask: torch.Tensor, *, block_size: int, q_offset: int
) -> torch.Tensor:
    """Attention recall of each query token: ``mass`` [Hq, Lq, nkb] from :func:`true_block_mass`,
    ``block_mask`` [Hq, nqb, nkb] -> [Hq, Lq], the true probability inside the kept blocks."""
    lq = mass.shape[1]
    rows = torch.arange(q_offset, q_offset + lq, device=mass.device) // block_size - q_offset // block_size
    return (mass * block_mask[:, rows].to(mass.dtype)).sum(-1)


def calibrate_heads(
    scores: torch.Tensor,
    mass: torch.Tensor,
    *,
    block_size: int,
    q_offset: int,
    target: float = 0.9,
    tol: float = 1e-3,
) -> torch.Tensor:
    """Smallest tau per head (within ``tol``, rounded up) whose selection has mean token recall >= target.

    scores: [Hq, nqb, nkb] estimated block masses; mass: [Hq, Lq, nkb] true block masses of the same
    queries. Returns [Hq] float64 in (0, 1] (tau = 1 keeps every causal block: recall 1; a head whose
    sink + diagonal blocks already reach the target gets ``tol``, the smallest tau a config accepts).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target: expected a share in (0, 1], got {target!r}")
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0.0 < tol < 1.0:  # else no end to bisecting
        raise ValueError(f"tol: expected a float in (0, 1), got {tol!r}")
    check_block_geometry(block_size)
    if isinstance(q_offset, bool) or not isinstance(q_offset, int) or q_offset < 0:
        raise ValueError(f"q_offset: expected an int >= 0, got {q_offset!r}")
    if not isinstance(mass, torch.Tensor) or mass.dim() != 3 or not isinstance(scores, torch.Tensor) or scores.dim() != 3:
        raise ValueError("scores, mass: expected tensors [Hq, nqb, nkb] and [Hq, Lq, nkb]")
    hq, lq, nkb = mass.shape
    expected = (hq, query_blocks(q_offset, lq, block_size)[1], nkb) if lq else None
    if lq < 1 or tuple(scores.shape) != expected:
        raise ValueError(
            f"scores: expected shape [Hq, nqb, nkb] = {expected} (from mass {tuple(mass.shape)}, q_offset={q_offset}, "
            f"block_size={block_size}), got {tuple(scores.shape)}"
        )
    first_qb = q_offset // block_size
    lo = torch.zeros(hq, dtype=torch.float64)
    hi = torch.ones(hq, dtype=torch.float64)
    recall0 = token_recall(mass, select_blocks(scores, 0.0, q_block_offset=first_qb), block_size=block_size, q_offset=q_offset)
    done = recall0.mean(-1).cpu() >= target  # sink + diagonal already enough
    hi[done] = tol
    while float((hi - lo).max()) > tol:
        mid = (lo + hi) / 2
        mask = select_blocks(scores, mid, q_block_offset=first_qb)
        ok = token_recall(mass, mask, block_size=block_size, q_offset=q_offset).mean(-1).cpu() >= target
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    return hi


def calibrate_layer(
    samples: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    block_size: int = 128,
    stride: int = 8,
    target: float = 0.9,
    scale: float | None = None,
    tol: float = 1e-3,
) -> torch.Tensor:
    """Per-head tau for one layer over several prompts: the max over prompts of :func:`calibrate_heads`
    (every sample reaches the target, as the official profiler takes the max). samples: (q [L, Hq, D],
    k [L, Hkv, D]) per prompt, queries = whole prompt. Returns [Hq] float64."""
    if not samples:
        raise ValueError("samples: expected at least one (q, k) pair, got none")
    taus = []
    for q, k in samples:
        lq, lk, *_ = check_qkv(q, k)
        off = resolve_q_offset(None, lq, lk)
        scores = estimate_block_scores(q, k, block_size=block_size, stride=stride, scale=scale)
        mass = true_block_mass(q, k, block_size=block_size, scale=scale)
        assert query_blocks(off, lq, block_size)[1] == scores.shape[1]
        taus.append(calibrate_heads(scores, mass, block_size=block_size, q_offset=off, target=target, tol=tol))
    return torch.stack(taus).max(0).values


TABLE_FORMAT = "xedge-xattn-thresholds/1"


def calibrate_model(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    max_tokens: int = 4096,
    block_size: int = 128,
    stride: int = 8,
    target: float = 0.9,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-(layer, query head) tau for a local HF model over sample prompts (max over prompts).

    Returns the JSON-ready calibration file: ``{"format", "threshold": [[tau per head] per layer],
    "target", "block_size", "stride", "model", "model_key", "prompt_tokens", "mean_tau"}``; ``threshold`` is what
    ``XAttentionConfig(threshold=...)`` and ``xedge serve --xattn-threshold-table`` take.
    """
    from attention_backend.capture import QKCapture
    from attention_backend.shipped_tables import model_key

    XAttentionConfig(block_size=block_size, stride=stride)  # validates the geometry up front
    if not texts:
        raise ValueError("texts: expected at least one sample prompt, got none")
    capture = QKCapture(model_dir)
    per_prompt: list[torch.Tensor] = []
    lengths = []
    for i, text in enumerate(texts):
        layers = capture.capture(text, max_tokens)
        lengths.append(int(layers[0].q.shape[0]))
        taus = [
            calibrate_layer([(lay.q, lay.k)], block_size=block_size, stride=stride, target=target, scale=lay.scale)
            for lay in layers
        ]
        per_prompt.append(torch.stack(taus))
        if log:
            log(f"prompt {i + 1}/{len(texts)}: {lengths[-1]} tokens, mean tau {float(per_prompt[-1].mean()):.3f}")
    table = torch.stack(per_prompt).max(0).values  # [layers, Hq]
    return {
        "format": TABLE_FORMAT,
        # rounded up, so a stored tau never keeps less than the calibrated one
        "threshold": [[min(1.0, math.ceil(float(t) * 1e4) / 1e4) for t in row] for row in table],
        "target": target,
        "block_size": block_size,
        "stride": stride,
        "model": str(model_dir),
        "model_key": model_key(capture.config),  # what attention_backend/tables/ files are matched on
        "prompt_tokens": lengths,
        "mean_tau": float(table.mean()),
    }
