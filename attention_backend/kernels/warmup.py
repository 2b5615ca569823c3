"""Compile the XAttention kernels before the first long request.

Triton compiles a kernel the first time it sees a new set of constexprs (integer arguments that change per
request are marked ``do_not_specialize`` in each kernel). What is left to compile is known at start-up:
the estimation and sparse kernels once per model shape, and the block-score and selection kernels once per
power of two of the key blocks in a row (``NKB``: the row is held in registers, ``tl.arange`` needs its
length at compile time; the selection also at the shorter lengths of ``select.level_sizes``, where a call's
early causal rows run). :func:`precompile` runs them all once, so no request pays a compile (seconds at
128K on an H100, bench/results/vllm_ttft/notes.md) and vLLM's JIT monitor, armed after its warm-up, sees
none.
"""

from __future__ import annotations

import math

import torch
import triton

from attention_backend.kernels.estimate import block_scores_from_lse
from attention_backend.kernels.page_tables import fused_supported, sparse_pages_fused
from attention_backend.kernels.prefill import PrefillSeq, paged_attend, paged_select
from attention_backend.kernels.select import level_sizes, select_blocks_indexed


def row_block_counts(min_len: int, max_len: int, block_size: int) -> list[int]:
    """The ``NKB`` values (powers of two) of rows from ``min_len`` to ``max_len`` tokens."""
    if not 0 < min_len <= max_len:
        raise ValueError(f"need 0 < min_len <= max_len, got {min_len}, {max_len}")
    lo, hi = (triton.next_power_of_2(math.ceil(n / block_size)) for n in (min_len, max_len))
    return [1 << i for i in range(lo.bit_length() - 1, hi.bit_length())]


def precompile(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    *,
    block_size: int,
    stride: int,
    threshold: float | torch.Tensor,
    scale: float,
    fp8: bool,
    attend: bool,
    min_len: int,
    max_len: int,
    page_tables: bool = False,
) -> list[int]:
    """Compile every kernel a prefill row of ``min_len..max_len`` tokens launches; returns the ``NKB`` values.

    ``query``: the layer's ``[*, Hq, D]`` (only its shape and dtype are used); ``key_cache``/``value_cache``:
    the layer's paged cache views ``[pages, page, Hkv, D]``. Its first pages are READ (never written) by
    one small row, so every launch has the strides and alignment of the real ones; the outputs are
    discarded. ``attend``: also the Triton sparse kernel (the ``triton`` sparse kernel; ``fa3`` is vLLM's
    compiled FlashAttention). ``page_tables``: also the ``fa3`` sparse kernel's table builder
    (``kernels.page_tables``, in both query-block orders). Runs on the caller's stream; no host sync beyond Triton's own.
    """
    hq, d = query.shape[-2:]
    page = key_cache.shape[1]
    k_len = 2 * block_size + 1  # two full blocks and a partial one: the TMA kernel and its pointer tail
    pages = math.ceil(k_len / page)
    if key_cache.shape[0] < pages:
        raise ValueError(f"precompile needs a cache of at least {pages} pages, got {key_cache.shape[0]}")
    table = torch.arange(pages, dtype=torch.int32, device=query.device)[None]
    q = torch.zeros((k_len, hq, d), dtype=query.dtype, device=query.device)
    seqs = [PrefillSeq(row=0, q_start=0, q_len=k_len, k_len=k_len)]
    sels = paged_select(q, key_cache, value_cache, table, seqs, block_size=block_size, stride=stride,
                        threshold=threshold, scale=scale, fp8=fp8)
    if attend:
        paged_attend(q, key_cache, value_cache, table, seqs, sels, block_size=block_size, scale=scale,
                     out=torch.empty_like(q))
    for descending in (False, True) if page_tables and fused_supported(block_size, page) else ():  # both orders
        sparse_pages_fused(sels[0].idx, sels[0].count, table[0], q_len=k_len, k_len=k_len, block_size=block_size,
                           page_size=page, ratio=key_cache.shape[2], num_kv_heads=key_cache.shape[2],
                           descending=descending)  # fmt: skip
    counts = row_block_counts(min_len, max_len, block_size)
    r = block_size // stride
    for n_kb in counts:  # one query block (the last) against n_kb key blocks
        lse = torch.zeros((1, r, n_kb), dtype=torch.float32, device=query.device)
        scores = torch.zeros((1, 1, n_kb), dtype=torch.float32, device=query.device)
        last = n_kb - 1
        block_scores_from_lse(lse, scores, k_len=n_kb * block_size, q_offset=last * block_size, first_qb=last,
                              stride=stride)
        for nkb in level_sizes(n_kb):  # a row at each length the selection of n_kb key blocks launches at
            select_blocks_indexed(scores, 0.9, first_qb=nkb - 1)
    return counts
