"""XAttention's block-sparse attention on vLLM's own FlashAttention 3 (the ``fa3`` sparse kernel).

The kept key blocks of every (query head, query block) become the page table of one short causal sequence
(``attention_backend.block_pages``; on the GPU built by one Triton launch, ``kernels.page_tables``), so one
paged varlen FA3 call computes the block-sparse attention of all sparse rows of a layer at FA3's speed per
computed block, reading K/V from vLLM's cache in place. What it costs beyond FA3: building the tables (no host
sync) and either a head-major copy of the sparse rows' queries and outputs or, at the head dims where that
measured faster, one FA3 call per row and query head on strided views over a few CUDA streams. Needs a vLLM page size that divides the XAttention block
(``block_pages.pages_unsupported``); the Triton kernel (``kernels.paged_attend``) serves the other cases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from vllm.vllm_flash_attn import flash_attn_varlen_func

from attention_backend.block_pages import (
    cached_row_geometry,
    concat_pages,
    head_major,
    head_pages,
    sparse_pages,
)

TMA_PAGES_HEAD_DIMS = (128,)
"""Head dims at which ``fa3_attend(tma_pages=None)`` turns TMA page loads on, as measured (bench/xattn_curve.py on an
NVIDIA H100 80GB HBM3, 2026-12-06 18:05 UTC, bench/results/xattn_curve/): at d 128 they took 0.86-0.98x the time of
the plain tables at 128K and 0.90-0.96x at 64K over all ten masks (0.85-1.04x at 32K); at d 256 and d 64 0.96-1.09x,
no gain."""

PER_HEAD_STREAMS_BY_HEAD_DIM = {128: 4}
"""``fa3_attend(per_head_streams=None)`` at these head dims: the copy-free calls on that many streams; elsewhere 0, one
FA3 call over head-major copies of the queries. Measured (bench/xattn_curve.py on an NVIDIA H100 80GB HBM3,
2026-12-07 08:35 UTC, TMA pages both ways): at d 128 four streams took 0.84-0.99x the copies' time at 128K and
0.77-0.98x at 64K over all ten masks, 0.76-1.01x at 32K; at d 256 0.76-0.99x except 64K at densities 0.3 / 0.5
(1.02-1.13x): not switched there. 2, 8 and 16 streams (bench/xattn_fa3_streams.py, the same card, 2026-12-07 19:25
UTC, 128K, last first, densities 0.05-0.2) were within 4 % of 4 either way, no count faster at every point."""


DESCENDING_HEAD_DIMS: tuple[int, ...] = (128,)
"""Head dims at which the per-head calls give FA3 a row's query blocks last first (``fa3_attend(descending=None)``):
under a causal mask the last query blocks keep the most key blocks, and FA3 schedules a call's sequences in order, so
in ascending order each call ends on its heaviest tiles. Measured with the calls of bench/xattn_fa3_row_order.py (an
NVIDIA H100 80GB HBM3, 2026-12-07 16:18 UTC, 128K tokens, 32 / 8 heads, d 128): last first took 0.87x the time on one
stream and 0.91x on 4 streams on random masks (density 0.1 / 0.3), 0.93-0.94x / 0.99-1.01x on structured ones. In
the curve of the same card (bench/results/xattn_curve, 4 streams, ten masks a length), the sum of the ten times was
0.95x at 128K (random 0.91-0.97x from density 0.1 up, 1.04x at 0.05; structured 0.98-1.00x), 0.99x at 64K and 1.01x
at 32K (single masks there 0.87-1.13x on 2-29 ms calls: noise of the same size). The path (``fa3_varlen_seqused_q``)
passed its GPU tests there (tests/attention_backend/vllm/test_fa3_sparse_gpu.py)."""


def fa3_attend(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    block_table: torch.Tensor,
    seqs: list[Any],
    selections: list[Any],
    *,
    block_size: int,
    scale: float,
    out: torch.Tensor,
    widths: list[int] | None = None,
    fa_version: int = 3,
    tma_pages: bool | None = None,
    keep: list[torch.Tensor] | None = None,
    per_head_streams: int | None = None,
    descending: bool | None = None,
) -> None:
    """Block-sparse attention of the prefill rows ``seqs`` (``kernels.PrefillSeq``) over their
    ``selections`` (``kernels.Selection``); writes their rows of ``out [T, Hq, D]``.

    key_cache, value_cache: ``[num_pages, page, Hkv, D]`` views of vLLM's cache; block_table: the batch's
    ``[rows, max_pages]``; widths: per row, the most blocks any of its (head, query block) keeps (bounds
    the table; default all of the row's key blocks). ``tma_pages`` (None: at the head dims of
    ``TMA_PAGES_HEAD_DIMS``): pass ``max_seqlen_q = B + 1`` (an upper
    bound, as FA3 allows), which lets FA3 load K/V pages with TMA: its heuristic turns TMA page loads off
    when ``max_seqlen_q`` is at most its query tile (128), our case exactly. ``keep``: per row, a 0-dim bool
    on the device; a row whose flag is False keeps what ``out`` holds (decided dense on the device: give it
    zero counts, so nothing is computed for it). ``per_head_streams`` > 0 (None: ``PER_HEAD_STREAMS_BY_HEAD_DIM``):
    no copies: one FA3 call per (row, query head) reading that head's queries and writing its outputs in place
    through strided views, the calls spread over that many CUDA streams so one call's tail overlaps the next.
    ``descending`` (per-head calls only; None: at the head dims of ``DESCENDING_HEAD_DIMS``): each call takes the row's
    query blocks last first (``fa3_varlen_seqused_q``), so its heaviest sequences start first."""
    k_pages, ratio = head_pages(key_cache)
    v_pages, v_ratio = head_pages(value_cache)
    if v_ratio != ratio:
        raise ValueError(f"fa3_attend: K and V caches have different layouts {key_cache.stride()} {value_cache.stride()}")
    hkv = int(key_cache.shape[2])
    build = sparse_pages
    if query.is_cuda:  # one Triton launch instead of ~35 torch ops, where the page size allows
        from attention_backend.kernels.page_tables import fused_supported, sparse_pages_fused

        if fused_supported(block_size, int(key_cache.shape[1])):
            build = sparse_pages_fused
    head_dim = int(query.shape[-1])
    if tma_pages is None:
        tma_pages = head_dim in TMA_PAGES_HEAD_DIMS
    max_seqlen_q = block_size + 1 if tma_pages else block_size
    if per_head_streams is None:
        per_head_streams = PER_HEAD_STREAMS_BY_HEAD_DIM.get(head_dim, 0)
    if descending is None:
        descending = per_head_streams > 0 and head_dim in DESCENDING_HEAD_DIMS
    if descending and per_head_streams <= 0:
        raise ValueError("fa3_attend: descending query blocks need the per-head calls (per_head_streams > 0)")
    parts = [
        build(
            sel.idx, sel.count, block_table[s.row], q_len=s.q_len, k_len=s.k_len, block_size=block_size,
            page_size=int(key_cache.shape[1]), ratio=ratio, num_kv_heads=hkv,
            width=None if widths is None else widths[i], descending=descending,
        )
        for i, (s, sel) in enumerate(zip(seqs, selections, strict=True))
    ]
    if per_head_streams > 0:
        _per_head_calls(query, k_pages, v_pages, seqs, parts, block_size=block_size, max_seqlen_q=max_seqlen_q,
                        scale=scale, out=out, fa_version=fa_version, streams=per_head_streams, keep=keep)
        return
    pages = concat_pages(parts)
    q_parts = [head_major(query[s.q_start : s.q_start + s.q_len]) for s in seqs]
    q_hm = q_parts[0] if len(q_parts) == 1 else torch.cat(q_parts)
    o_hm = torch.empty_like(q_hm)
    flash_attn_varlen_func(
        q_hm, k_pages, v_pages, max_seqlen_q=max_seqlen_q, cu_seqlens_q=pages.cu_seqlens_q,
        max_seqlen_k=pages.max_seqlen_k, seqused_k=pages.seqused_k, softmax_scale=scale, causal=True,
        block_table=pages.block_table, out=o_hm, fa_version=fa_version, num_splits=1,
    )
    hq = query.shape[1]
    start = 0
    for i, s in enumerate(seqs):
        n = hq * s.q_len
        rows = slice(s.q_start, s.q_start + s.q_len)
        o = o_hm[start : start + n].view(hq, s.q_len, head_dim).transpose(0, 1)
        out[rows] = o if keep is None else torch.where(keep[i], o, out[rows])
        start += n


def _per_head_calls(
    query: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor, seqs: list[Any], parts: list[Any], *,
    block_size: int, max_seqlen_q: int, scale: float, out: torch.Tensor, fa_version: int, streams: int,
    keep: list[torch.Tensor] | None,
) -> None:
    """``fa3_attend`` without the head-major copies: row ``s`` and head ``h`` are the sequences
    ``h * n_qb .. (h + 1) * n_qb`` of its tables, and their queries/outputs the strided ``[q_len, 1, D]`` column
    ``h`` of ``query`` / ``out`` (FA3 takes any row stride). Every head of a row has the same query blocks, so
    the first head's query offsets serve them all (``block_pages.row_geometry`` with one head). A row whose ``keep``
    flag is False gets all-zero query counts on the device: its sequences hold no query, FA3 writes none of its
    rows (with empty key ranges alone it would write zeros over them). Tables built ``descending`` (their
    ``seqused_q`` given) hold each head's query blocks last first; the calls pass their offsets and ``seqused_q``
    (``fa3_varlen_seqused_q``)."""
    hq = query.shape[1]
    flags = keep if keep is not None else [None] * len(parts)
    rows = []  # per row: (query rows, cu_seqlens_q, seqused_q or None, tables [hq, n_qb, width], seqused_k [hq, n_qb])
    for s, pages, flag in zip(seqs, parts, flags, strict=True):
        n_qb = pages.block_table.shape[0] // hq
        tables, used_k = pages.block_table.view(hq, n_qb, -1), pages.seqused_k.view(hq, n_qb)
        if pages.seqused_q is None:
            cu, used_q = pages.cu_seqlens_q[: n_qb + 1], None
        else:  # one head's offsets (the head-major ones of head 0 lack its total), cached like the tables' geometry
            cu, _, used_q = cached_row_geometry(s.q_len, s.k_len, block_size, 1, query.device, True)
        if flag is not None:  # a row decided dense: no queries (zero offsets, or zero seqused_q where given)
            if used_q is None:
                cu = cu * flag
            else:
                used_q = used_q * flag
        rows.append((slice(s.q_start, s.q_start + s.q_len), cu, used_q, tables, used_k))

    def calls() -> Iterator[Callable[[], object]]:
        for (rows_q, cu, used_q, tables, used_k), pages in zip(rows, parts, strict=True):
            for h in range(hq):
                common = dict(max_seqlen_q=max_seqlen_q, cu_seqlens_q=cu, max_seqlen_k=pages.max_seqlen_k,
                              seqused_k=used_k[h], block_table=tables[h], softmax_scale=scale,
                              out=out[rows_q, h : h + 1])  # fmt: skip
                if used_q is None:
                    yield functools.partial(flash_attn_varlen_func, query[rows_q, h : h + 1], k_pages, v_pages,
                                            causal=True, fa_version=fa_version, num_splits=1, **common)  # fmt: skip
                else:
                    yield functools.partial(fa3_varlen_seqused_q, query[rows_q, h : h + 1], k_pages, v_pages,
                                            seqused_q=used_q, **common)  # fmt: skip

    if query.is_cuda:  # the kernels package needs Triton (CUDA builds)
        from attention_backend.kernels.streams import round_robin

        round_robin(calls(), streams, query.device)
    else:  # no streams off CUDA (the CPU tests' FA3 model): in order
        for call in calls():
            call()


_FWD_SET = {"window_size_left": -1, "window_size_right": -1, "softcap": 0.0, "is_rotary_interleaved": True,
            "is_causal": True, "num_splits": 1, "sm_margin": 0, "cp_world_size": 1, "cp_rank": 0}  # fmt: skip
"""What ``fa3_varlen_seqused_q`` passes to FA3's op for its non-tensor arguments (as vLLM's wrapper does for a causal
call without softcap, rotary or context parallelism); the tensors it does not name are None."""
_FWD_GIVEN = ("q", "k", "v", "out", "cu_seqlens_q", "seqused_q", "seqused_k", "max_seqlen_q", "max_seqlen_k",
              "page_table", "softmax_scale")  # fmt: skip


@functools.cache
def _fwd_arguments() -> tuple[str, ...]:
    """The argument names of vLLM's FA3 op, in order; RuntimeError naming one this adapter cannot fill (a required
    argument of a vLLM release it does not know)."""
    schema = torch.ops._vllm_fa3_C.fwd.default._schema
    names = tuple(a.name for a in schema.arguments)
    unknown = [f"{a.name}: {a.type}" for a in schema.arguments
               if a.name not in _FWD_SET and a.name not in _FWD_GIVEN and not isinstance(a.type, torch.OptionalType)]  # fmt: skip
    if unknown or not set(_FWD_GIVEN) <= set(names):
        raise RuntimeError(f"vLLM's FA3 op ({schema}) does not match this adapter: cannot fill {unknown or _FWD_GIVEN}; "
                           "pass descending=False (the ascending query blocks of vLLM's own wrapper)")  # fmt: skip
    return names


def fa3_varlen_seqused_q(
    q: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor, *, out: torch.Tensor, cu_seqlens_q: torch.Tensor,
    seqused_q: torch.Tensor, seqused_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int, block_table: torch.Tensor,
    softmax_scale: float,
) -> None:
    """vLLM's FA3 paged varlen causal forward (``flash_attn_varlen_func(..., fa_version=3, num_splits=1)``) with
    ``seqused_q``, which that wrapper leaves None: sequence ``b``'s queries are the ``seqused_q[b]`` rows from
    ``cu_seqlens_q[b]``, so the sequences may come in any order of their rows. Writes ``out``. The op's arguments are
    filled by name from its schema (``_fwd_arguments``)."""
    given = dict(q=q, k=k_pages, v=v_pages, out=out, cu_seqlens_q=cu_seqlens_q, seqused_q=seqused_q,
                 seqused_k=seqused_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, page_table=block_table,
                 softmax_scale=softmax_scale)  # fmt: skip
    torch.ops._vllm_fa3_C.fwd(*[given[n] if n in given else _FWD_SET.get(n) for n in _fwd_arguments()])
