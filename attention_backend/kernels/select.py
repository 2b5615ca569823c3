"""Block selection on the GPU, one program per (head, query block), no host synchronisation.

Per row of block scores: the sink block (key block 0) and the diagonal block are always kept; the other
causal blocks are added in descending score order while the kept mass before adding a block is below
``tau * row mass`` (the official x-attention rule, ``cumsum_without_self < required``). ``tau >= 1``
keeps every causal block. The kernel does not sort: the smallest score that is taken (the cut-off) is the
smallest score ``c`` with ``kept + sum(scores > c) < required``, found by bisection over the bits of the
non-negative fp32 scores (31 masked sums over the row, in registers), which names exactly the block the
sorted walk stops at (``probes`` > 1: that many candidates tested a round, fewer rounds, the same ``c``).
Every non-forced causal block scoring more than ``c`` is kept, plus as many of the blocks tied at ``c`` as the
walk would take, lowest key block first (the reference's stable sort). The sums run in
a tree, not in sorted order: a row whose running mass meets ``required`` within fp32 rounding may keep one
block more or less than the float64 reference. Besides the bool mask it writes the kept key blocks in
ascending order with their count, which is what the sparse attention kernel iterates over.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


# Every integer argument changes with the request: none is specialised (one compile per NKB, see kernels.warmup).
@triton.jit(do_not_specialize=["first_qb", "row0", "n_kb", "s_sh", "s_sq", "s_mh", "s_mq", "s_ih", "s_iq", "s_ch"])
def _xattn_select_kernel(
    score_ptr, tau_ptr, mask_ptr, idx_ptr, cnt_ptr,
    first_qb, row0, n_kb,
    s_sh, s_sq, s_mh, s_mq, s_ih, s_iq, s_ch,
    NKB: tl.constexpr, PROBES: tl.constexpr, ROUNDS: tl.constexpr,
):
    """One (head, query block) a program, rows ``row0 + program_id(0)``; ``NKB`` covers the row's causal blocks
    (``qb + 1 <= NKB``), and the row's mask entries from ``NKB`` to ``n_kb`` (all past the diagonal) are written
    False."""
    qb_local = row0 + tl.program_id(0)
    h = tl.program_id(1)
    qb = first_qb + qb_local
    kb = tl.arange(0, NKB)
    causal = kb <= qb
    s = tl.load(score_ptr + h.to(tl.int64) * s_sh + qb_local.to(tl.int64) * s_sq + kb, mask=causal, other=0.0)
    tau = tl.load(tau_ptr + h)
    forced = causal & ((kb == 0) | (kb == qb))
    required = tau * tl.sum(s, 0)
    kept = tl.sum(tl.where(forced, s, 0.0), 0)
    other = tl.where(forced, -1.0, tl.where(causal, s, -1.0))  # candidates are >= 0; -1: never taken
    # Search for the cut-off's bits: the smallest b in [0, bits(max)] with kept + sum(other > f(b)) < required
    # (a non-negative float's bits order as it does). That predicate changes only at candidate scores, so b
    # lands on one; when even the largest candidate is not taken (kept >= required) the cut-off is +inf.
    # Each round splits [lo, hi] into PROBES + 1 parts and tests the PROBES part ends at once (one reduction of
    # PROBES sums: fewer dependent rounds than bisection, PROBES = 1): the predicate is monotone in b (fp32 sums
    # of fewer non-negative terms in the same tree are no larger), so the failing probes come first.
    lo = tl.full((), 0, tl.int32)
    hi = tl.maximum(tl.max(other, 0), 0.0).to(tl.int32, bitcast=True)
    if PROBES == 1:  # bisection on the row as it is (the form timed on the H100)
        for _ in range(ROUNDS):
            mid = lo + (hi - lo) // 2
            ok = kept + tl.sum(tl.where(other > mid.to(tl.float32, bitcast=True), other, 0.0), 0) < required
            hi = tl.where(ok, mid, hi)
            lo = tl.where(ok, lo, mid + 1)
    else:
        part = tl.arange(0, PROBES) + 1
        cand = other[:, None]
        for _ in range(ROUNDS):
            step = (hi - lo) // (PROBES + 1) + 1  # ceil((hi - lo + 1) / (PROBES + 1)): no int32 overflow below 2^31
            probe = tl.minimum(lo + part * step - 1, hi).to(tl.float32, bitcast=True)
            mass = tl.sum(tl.where(cand > probe[None, :], cand, 0.0), 0)
            fail = tl.sum((kept + mass >= required).to(tl.int32), 0)
            hi = tl.minimum(lo + (fail + 1) * step - 1, hi)
            lo = lo + fail * step
    cutoff = tl.where(kept < required, hi.to(tl.float32, bitcast=True), float("inf"))
    above = tl.sum(tl.where(other > cutoff, other, 0.0), 0)
    # Blocks tied at the cut-off: the walk takes tie j while kept + above + j * cutoff < required, lowest key
    # block first (the reference's stable sort).
    tied = (other == cutoff).to(tl.int32)
    n_tied = tl.sum(tied, 0)
    step = tl.where(n_tied > 0, cutoff, 0.0)  # no inf * 0 when nothing ties (scores are finite masses: an inf one
    #                                            would tie at an inf cut-off and keep only the forced blocks)
    j = tl.arange(0, NKB)
    n_tied_taken = tl.sum(((j < n_tied) & (kept + (above + j.to(tl.float32) * step) < required)).to(tl.int32), 0)
    tie_rank = tl.cumsum(tied, 0) - tied
    sel = forced | (causal & (other > cutoff)) | ((tied > 0) & (tie_rank < n_tied_taken))
    sel = tl.where(tau >= 1.0, causal, sel)
    mask_row = mask_ptr + h.to(tl.int64) * s_mh + qb_local.to(tl.int64) * s_mq
    tl.store(mask_row + kb, sel, mask=kb < n_kb)
    for start in range(NKB, n_kb, NKB):  # a short row of a longer call (select_levels): the rest of its mask
        tl.store(mask_row + start + kb, False, mask=start + kb < n_kb)
    sel_i = sel.to(tl.int32)
    pos = tl.cumsum(sel_i, 0) - sel_i
    tl.store(idx_ptr + h.to(tl.int64) * s_ih + qb_local.to(tl.int64) * s_iq + pos, kb, mask=sel)
    tl.store(cnt_ptr + h.to(tl.int64) * s_ch + qb_local, tl.sum(sel_i, 0))


def thresholds_per_head(threshold: float | torch.Tensor, num_heads: int, device: torch.device) -> torch.Tensor:
    """``tau`` as an fp32 ``[Hq]`` tensor on ``device``; scalar or per-head, each in [0, 1]."""
    if isinstance(threshold, torch.Tensor):
        tau = threshold.detach().to(device=device, dtype=torch.float32).reshape(-1)
        if tau.numel() != num_heads:
            raise ValueError(f"threshold must be a scalar or [Hq={num_heads}], got shape {tuple(threshold.shape)}")
        return tau
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return torch.full((num_heads,), float(threshold), dtype=torch.float32, device=device)


def select_warps(nkb: int) -> int:
    """Warps per row of ``nkb`` (a power of two) blocks: 1 up to 512 blocks, then one per 512 (16 scores a thread), so
    the bisection's 31 sums take few cross-warp steps. H100, 2026-12-07 (bench/results/xattn_kernels/
    xattn_select_speed.json, ms at 1 / 2 / 4 warps): 512 blocks 0.154 / 0.176 / 0.232, 1,024 blocks 0.556 / 0.488 /
    0.505."""
    return max(1, min(8, nkb // 512))


def level_sizes(n_kb: int, levels: int | None = None) -> list[int]:
    """The ``NKB`` values a selection over ``n_kb`` key blocks launches at, ascending: the longest row's power of two,
    and below it each halving that runs on fewer warps (``select_warps``): 512 and 1,024 for 1,024 key blocks, one
    size up to 512 (one warp). ``levels``: at most that many (the longest kept). On an H100 against every row at the
    longest's length (bench/results/xattn_kernels/xattn_select_speed_levels_h100.json, 2026-12-07 23:35 UTC): 0.78x
    the time at 128K, 0.97-0.98x at 64K, 1.00-1.01x at 32K, the same decisions on untied scores. Split further (rows
    at 128 / 256 / 512 at 64K, all on one warp: ``xattn_select_speed_levels3_h100.json``) it took 1.25x: a row on
    one warp costs about the same at any length, and each launch adds its tail."""
    if levels is not None and levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    sizes = [triton.next_power_of_2(n_kb)]
    while sizes[0] > 1 and select_warps(sizes[0] // 2) < select_warps(sizes[0]):
        sizes.insert(0, sizes[0] // 2)
    return sizes if levels is None else sizes[-levels:]


def select_levels(first_qb: int, n_qb: int, n_kb: int, levels: int | None = None) -> list[tuple[int, int, int]]:
    """The launches of one selection call as ``(first local row, rows, NKB)``: rows ``first_qb .. first_qb + n_qb``
    grouped by the smallest of ``level_sizes`` their ``qb + 1`` causal blocks fit."""
    sizes = level_sizes(n_kb, levels)
    full = sizes[-1]
    out, row = [], 0
    for nkb in sizes:
        end = n_qb if nkb == full else min(n_qb, max(row, nkb - first_qb))  # rows with first_qb + i + 1 <= nkb
        if end > row:
            out.append((row, end - row, nkb))
            row = end
    return out


SELECT_PROBES = 1
"""Cut-off candidates tested per round of the search (a power of two; 1: bisection, 31 rounds). Measured
(bench/xattn_select_speed.py on an NVIDIA H100 80GB HBM3, 2026-12-07 19:26 UTC, 128K, 32 heads): bisection 0.485 /
0.549 ms (random / tied scores) at its 2 warps; the fastest other probes x warps 0.505 (2 x 4) / 0.528 ms (4 x 4), the
same decisions: not worth switching."""


def search_rounds(probes: int) -> int:
    """Rounds for ``probes`` tests a round to narrow the < 2^31 bit patterns of a finite non-negative float to one:
    the smallest n with (probes + 1)^n >= 2^31 (31 for bisection, 20 for 2, 14 for 4, 10 for 8, 8 for 16)."""
    n, reach = 0, 1
    while reach < 2**31:
        n, reach = n + 1, reach * (probes + 1)
    return n


def select_blocks_indexed(
    scores: torch.Tensor, threshold: float | torch.Tensor, *, first_qb: int, num_warps: int | None = None,
    probes: int | None = None, levels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Select blocks from ``scores: [Hq, n_qb, n_kb]`` fp32 (row ``i`` = absolute query block
    ``first_qb + i``). Returns ``mask [Hq, n_qb, n_kb]`` bool, ``idx [Hq, n_qb, n_kb]`` int32 (the kept key
    blocks ascending, the rest of each row unspecified) and ``count [Hq, n_qb]`` int32. ``num_warps``: per
    row, default :func:`select_warps`; ``probes``: cut-off candidates per search round (a power of two), default
    ``SELECT_PROBES`` (bench/xattn_select_speed.py times the others); ``levels``: the rows run at up to that many
    row lengths (``level_sizes``; 1: every row at the longest's)."""
    probes = SELECT_PROBES if probes is None else probes
    if probes < 1 or probes & (probes - 1):
        raise ValueError(f"probes must be a power of two >= 1, got {probes}")
    if scores.dim() != 3 or scores.dtype != torch.float32:
        raise ValueError(f"scores must be [Hq, n_qb, n_kb] float32, got {tuple(scores.shape)} {scores.dtype}")
    hq, n_qb, n_kb = scores.shape
    if first_qb < 0 or first_qb + n_qb > n_kb:
        raise ValueError(f"query blocks [{first_qb}, {first_qb + n_qb}) must lie inside the {n_kb} key blocks")
    scores = scores.contiguous()
    tau = thresholds_per_head(threshold, hq, scores.device)
    mask = torch.empty((hq, n_qb, n_kb), dtype=torch.bool, device=scores.device)
    idx = torch.empty((hq, n_qb, n_kb), dtype=torch.int32, device=scores.device)
    count = torch.empty((hq, n_qb), dtype=torch.int32, device=scores.device)
    for row0, rows, nkb in select_levels(first_qb, n_qb, n_kb, levels):
        _xattn_select_kernel[(rows, hq)](
            scores, tau, mask, idx, count,
            first_qb, row0, n_kb,
            scores.stride(0), scores.stride(1), mask.stride(0), mask.stride(1), idx.stride(0), idx.stride(1),
            count.stride(0),
            NKB=nkb, PROBES=probes, ROUNDS=search_rounds(probes),
            num_warps=num_warps or select_warps(nkb),
        )
    return mask, idx, count


def mask_to_index(block_mask: torch.Tensor, first_qb: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Any bool ``block_mask [Hq, n_qb, n_kb]`` (row ``i`` = absolute query block ``first_qb + i``) as
    (ascending kept causal blocks, count), on the device, no sync. Blocks above the diagonal hold no
    visible key and are dropped."""
    n_qb, n_kb = block_mask.shape[-2:]
    ar = torch.arange(n_kb, device=block_mask.device, dtype=torch.int32)
    diag = torch.arange(first_qb, first_qb + n_qb, device=block_mask.device, dtype=torch.int32)
    block_mask = block_mask & (ar[None, :] <= diag[:, None])
    keyed = torch.where(block_mask, ar, n_kb + ar)
    idx = torch.sort(keyed, dim=-1).values.to(torch.int32)
    return idx, block_mask.sum(-1, dtype=torch.int32)
