"""Block masks to compare XAttention against on real attention: the oracle (blocks ranked by TRUE mass)
and the streaming mask (sink block + the most recent blocks).

Everything works on the true block mass of whole prompts (queries = the prompt, ``q_offset = 0``):
``row_mass`` [Hq, nqb, nkb] is :func:`attention_backend.calibrate.true_block_mass` summed over the tokens
of each query block, so a head's *recall* of a block mask (mean over its query tokens of the true
probability inside the kept blocks) is ``(row_mass * mask).sum() / L``. Any device; no host sync except
where a Python number is returned.
"""

from __future__ import annotations

import torch


def row_block_mass(mass: torch.Tensor, block_size: int) -> torch.Tensor:
    """mass [Hq, L, nkb] (per query token) -> [Hq, nqb, nkb], summed over each query block's tokens."""
    hq, n_tok, nkb = mass.shape
    nqb = -(-n_tok // block_size)
    padded = torch.nn.functional.pad(mass, (0, 0, 0, nqb * block_size - n_tok))
    return padded.view(hq, nqb, block_size, nkb).sum(2)


def causal_blocks(nqb: int, nkb: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[nqb, nkb] bool: key block j is visible to query block i (j <= i; queries start at position 0)."""
    return torch.arange(nkb, device=device)[None, :] <= torch.arange(nqb, device=device)[:, None]


def mask_recall(row_mass: torch.Tensor, mask: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Recall per head [Hq] (mean over the L = ``n_tokens`` query tokens) of ``mask`` [Hq, nqb, nkb]."""
    return (row_mass * mask.to(row_mass.dtype)).sum((1, 2)) / n_tokens


def oracle_min_blocks(row_mass: torch.Tensor, target: float, n_tokens: int) -> torch.Tensor:
    """Fewest causal blocks per head [Hq] whose recall reaches ``target``: the blocks of ALL query blocks
    ranked together by true mass (each (query block, key block) pair adds its mass / L to the recall
    and costs one block, so greedy by mass is optimal). The lower bound for any block mask that meets
    the target on the head's mean recall, which is the criterion XAttention's per-head tau is
    calibrated on (:func:`attention_backend.calibrate.calibrate_heads`)."""
    hq, nqb, nkb = row_mass.shape
    causal = causal_blocks(nqb, nkb, row_mass.device)
    flat = row_mass.masked_fill(~causal, -1.0).reshape(hq, -1).double()
    ranked = flat.sort(-1, descending=True).values.clamp_min(0.0)
    need = target * n_tokens * (1 - 1e-9)
    count = (ranked.cumsum(-1) < need).sum(-1) + 1
    return count.clamp_max(int(causal.sum()))


def oracle_min_blocks_per_row(row_mass: torch.Tensor, target: float, block_size: int, n_tokens: int) -> torch.Tensor:
    """Fewest causal blocks per head [Hq] such that EVERY query block keeps ``target`` of its tokens'
    mean true mass (blocks ranked by true mass within each query block): a stricter criterion than
    :func:`oracle_min_blocks` (no query block may fall short)."""
    hq, nqb, nkb = row_mass.shape
    causal = causal_blocks(nqb, nkb, row_mass.device)
    ranked = row_mass.masked_fill(~causal, -1.0).double().sort(-1, descending=True).values.clamp_min(0.0)
    tokens = torch.full((nqb,), float(block_size), dtype=torch.float64, device=row_mass.device)
    tokens[-1] = n_tokens - (nqb - 1) * block_size
    need = target * tokens[None, :, None] * (1 - 1e-9)
    count = ((ranked.cumsum(-1) < need).sum(-1) + 1).clamp_max(causal.sum(-1)[None, :])
    return count.sum(-1)


def streaming_mask(kept: torch.Tensor) -> torch.Tensor:
    """Sink + most recent blocks, as many per (head, query block) as ``kept`` [Hq, nqb, nkb] holds
    (the diagonal block counts as the most recent one)."""
    hq, nqb, nkb = kept.shape
    counts = kept.sum(-1)  # [Hq, nqb]
    col = torch.arange(nkb, device=kept.device)
    diag = torch.arange(nqb, device=kept.device)[:, None]
    recent = (col[None, None, :] <= diag[None]) & (col[None, None, :] > diag[None] - (counts[..., None] - 1))
    return recent | (col == 0)[None, None, :]


def oracle_mask(kept: torch.Tensor, row_mass: torch.Tensor) -> torch.Tensor:
    """Per (head, query block), as many causal blocks as ``kept`` holds, chosen by TRUE mass: the best
    recall any mask of that size per row can have."""
    hq, nqb, nkb = kept.shape
    causal = causal_blocks(nqb, nkb, kept.device)
    ranked = row_mass.masked_fill(~causal, -1.0).argsort(-1, descending=True)
    take = torch.arange(nkb, device=kept.device)[None, None, :] < kept.sum(-1, keepdim=True)
    return torch.zeros_like(kept).scatter_(-1, ranked, take)


def streaming_min_blocks(row_mass: torch.Tensor, target: float, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest window per head: sink + the ``w`` most recent blocks (diagonal included) in every query
    block, the fewest ``w`` whose recall reaches ``target``. Returns (kept causal blocks [Hq], w [Hq])."""
    hq, nqb, nkb = row_mass.shape
    dev = row_mass.device
    rows = torch.arange(nqb, device=dev)[:, None]
    back = torch.arange(nkb, device=dev)[None, :]  # 0 = diagonal, 1 = the block before, ...
    src = rows - back
    valid = src >= 1  # block 0 is the sink, counted separately
    gathered = row_mass.double().gather(-1, src.clamp_min(0).expand(hq, nqb, nkb)) * valid
    recent = gathered.cumsum(-1)  # [Hq, nqb, w-1]: mass of the w most recent non-sink blocks
    sink = row_mass[..., 0].double()  # [Hq, nqb]
    recall_by_w = (recent + sink[..., None]).sum(1) / n_tokens  # [Hq, nkb]: w = 1 .. nkb
    ok = recall_by_w >= target * (1 - 1e-9)
    w = torch.where(ok.any(-1), ok.double().argmax(-1) + 1, torch.full_like(ok[:, 0], nkb, dtype=torch.long))
    # kept per row: the sink plus min(w, i) recent non-sink blocks (block 0 of row 0 is the sink itself)
    i = torch.arange(nqb, device=dev)
    kept = (1 + torch.minimum(w[:, None], i[None, :])).sum(-1)
    return kept, w
