"""XAttention's estimation with the GEMM done by the vendor library (``EstimateTiles(gemm=True)``).

Same scores as ``estimate.estimate_block_scores`` (the module docstring there defines them), in three steps
per chunk of query rows instead of one fused Triton loop:
1. ``_pack_rows_kernel`` (once per call): the reshaped rows of queries (tokens reversed within each row of
   ``S``) and keys become contiguous ``[Hkv, rows, group, S * D]`` operands, so each KV head's GEMM is one
   plain row-major x column-major product; with ``fp8`` each row is scaled to e4m3's range by its own absolute
   maximum and the scale kept (``[Hkv, rows, group]`` fp32);
2. per KV head and chunk, the causal part of the logits ``(chunk rows x group) x keys`` by ``torch._scaled_mm``
   (fp8, rowwise scales: Hopper's fp8 tensor-core rate) or ``torch.matmul`` (bf16/fp16), bf16 out;
3. ``_lse_from_logits_kernel``: the fused kernel's epilogue (as ``estimate._store_tile_lse``) over those logits:
   per query row and key block ``log2 sum 2^(logit * log2e)`` into the same ``lse`` buffer, which
   ``estimate.block_scores_from_lse`` then turns into block scores.

Why: the fused Triton kernel's GEMM runs at 438 TFLOP/s on an H100 where cuBLAS does the same GEMM at 664
(bf16) and Hopper's fp8 rate is twice bf16's (``bench/results/xattn_kernels/notes.md``); the logits make
one round trip through memory instead (bounded by ``chunk_rows``). Rounding: logits are rounded to bf16
(relative 2^-8) before the softmax; fp8 operands as ``attention_backend.fp8`` measures them.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from attention_backend.fp8 import FP8_RANGE
from attention_backend.kernels.streams import round_robin

GEMM_ALIGN = 16
"""Rows of the packed operands are padded to a multiple of this (the fp8 GEMM's alignment)."""


@triton.jit(do_not_specialize=["src_rows", "n_rows"])
def _pack_rows_kernel(
    x_ptr, out_ptr, scale_ptr, src_rows, n_rows, s_xt, s_xh, s_oh, s_or, s_om, s_sh, s_sr,
    GROUP: tl.constexpr, S: tl.constexpr, D: tl.constexpr, RB: tl.constexpr, REVERSE: tl.constexpr,
    FP8: tl.constexpr, RANGE: tl.constexpr, SDP: tl.constexpr,
):
    """Rows ``RB`` of head ``h``, each whole (``S * D`` values) in registers, one read:
    ``out[h // GROUP, row, h % GROUP, t*D:(t+1)*D] = x[row*S + t', h]`` with ``t' = S-1-t`` (``REVERSE``, the
    queries) or ``t``; rows at or past ``src_rows`` are zeros. ``FP8``: each row divided by ``amax / RANGE``
    (kept in ``scale_ptr``) and stored as e4m3."""
    h = tl.program_id(1)
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    ok = rows < src_rows
    inside = rows < n_rows
    c = tl.arange(0, SDP)  # SDP: S * D up to a power of two
    c_ok = c < S * D
    t = c // D
    tok = rows[:, None] * S + ((S - 1 - t) if REVERSE else t)[None, :]
    x = tl.load(x_ptr + h.to(tl.int64) * s_xh + tok.to(tl.int64) * s_xt + (c % D)[None, :],
                mask=ok[:, None] & c_ok[None, :], other=0.0)
    o_base = out_ptr + (h // GROUP).to(tl.int64) * s_oh + (h % GROUP).to(tl.int64) * s_om
    if FP8:
        xf = x.to(tl.float32)
        amax = tl.maximum(tl.max(tl.abs(xf), 1), 1e-12)
        tl.store(scale_ptr + (h // GROUP).to(tl.int64) * s_sh + rows.to(tl.int64) * s_sr + h % GROUP,
                 amax / RANGE, mask=inside)
        x = (xf * (RANGE / amax)[:, None]).to(out_ptr.dtype.element_ty)
    tl.store(o_base + rows.to(tl.int64)[:, None] * s_or + c[None, :], x, mask=inside[:, None] & c_ok[None, :])


def pack_rows(
    x: torch.Tensor, stride: int, n_rows: int, *, group: int, reverse: bool, fp8: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x [tokens, H, D]`` (token-major, tokens from a row boundary) -> ``[H / group, n_rows, group, S * D]``
    (e4m3 with ``fp8``, else ``x``'s dtype) and, with ``fp8``, the per-row scales ``[H / group, n_rows, group]``
    (``x ~ packed * scale``). Rows past ``x``'s tokens are zeros."""
    tokens, heads, d = x.shape
    if tokens % stride:
        raise ValueError(f"pack_rows: {tokens} tokens are not whole rows of {stride}")
    dtype = torch.float8_e4m3fn if fp8 else x.dtype
    out = torch.empty((heads // group, n_rows, group, stride * d), dtype=dtype, device=x.device)
    scale = torch.empty((heads // group, n_rows, group), dtype=torch.float32, device=x.device) if fp8 else None
    sc = scale if scale is not None else out  # unused without fp8 (any pointer will do)
    sdp = triton.next_power_of_2(stride * d)
    rb = max(1, 8192 // sdp)  # 8K values per program
    _pack_rows_kernel[(triton.cdiv(n_rows, rb), heads)](
        x, out, sc, min(n_rows, tokens // stride), n_rows, x.stride(0), x.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        sc.stride(0) if fp8 else 0, sc.stride(1) if fp8 else 0,
        GROUP=group, S=stride, D=d, RB=rb, REVERSE=reverse, FP8=fp8, RANGE=FP8_RANGE, SDP=sdp, num_warps=4,
    )
    return out, scale


# Left specialised: the logits' strides and ``n_cols``, multiples of GEMM_ALIGN by construction (one compile, and their
# divisibility by 16 is what lets each thread load a key block's R logits as one 16-byte vector; unspecialised, Triton
# loads 2 bytes at a time and reduces each block across threads).
@triton.jit(do_not_specialize=["k_len", "q_offset", "row0", "n_rows", "n_kb", "a", "n_chunk", "s_lh", "s_er", "h0"])
def _lse_from_logits_kernel(
    logits_ptr, lse_ptr, k_len, q_offset, row0, n_rows, n_kb, scale_log2, a, n_chunk, n_cols,
    s_lg, s_lr, s_lm, s_lh, s_er, h0,
    GROUP: tl.constexpr, S: tl.constexpr, R: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, COLS: tl.constexpr,
):
    """``COLS`` consecutive ``BM`` x ``BN`` tiles of the logits ``[KV heads, n_chunk rows, GROUP, n_cols]`` (rows from
    absolute reshaped row ``a``; program axis 1 = KV head x GROUP + member) into the lse rows of query head
    ``h0 + axis 1``: the fused kernel's epilogue (``estimate._store_tile_lse``: causal mask, ``log2 sum 2^x`` per
    query row and key block), each tile loaded as ``[BM, BN / R, R]``. The max subtracted before ``exp2`` is each key
    block's own (the fused kernel takes the tile row's): the ``R`` contiguous logits of a block are one vector load
    of one thread, so every reduction here stays in registers, no shuffle across threads. Tiles past the chunk's last
    causal column are skipped."""
    NB: tl.constexpr = BN // R
    hm = tl.program_id(1)
    g = hm // GROUP
    m = hm % GROUP
    local = tl.program_id(0) * BM + tl.arange(0, BM)
    rows = a + local
    row_ok = (rows * S + S > q_offset) & (rows * S < k_len) & (rows < row0 + n_rows) & (local < n_chunk)
    j_end = a + tl.minimum(tl.program_id(0) * BM + BM, n_chunk)  # past this tile's last row: no causal column
    base = logits_ptr + g.to(tl.int64) * s_lg + local.to(tl.int64)[:, None, None] * s_lr + m * s_lm
    out = lse_ptr + (h0 + hm).to(tl.int64) * s_lh + (rows - row0).to(tl.int64)[:, None] * s_er
    for t in tl.range(0, COLS):
        kb = (tl.program_id(2) * COLS + t) * NB + tl.arange(0, NB)
        if (tl.program_id(2) * COLS + t) * BN < tl.minimum(j_end, n_cols):
            cols = kb[None, :, None] * R + tl.arange(0, R)[None, None, :]  # [1, NB, R]
            x = tl.load(base + cols, mask=(local < n_chunk)[:, None, None] & (cols < n_cols), other=0.0)
            x = tl.where(cols <= rows[:, None, None], x.to(tl.float32) * scale_log2, float("-inf"))
            mx = tl.max(x, 2)  # per key block, not per tile row: a block's R logits sit in one thread's registers
            mx = tl.where(mx == float("-inf"), 0.0, mx)
            lse = mx + tl.log2(tl.sum(tl.exp2(x - mx[:, :, None]), 2))
            tl.store(out + kb[None, :], lse, mask=row_ok[:, None] & (kb[None, :] * R < j_end) & (kb[None, :] < n_kb))


def lse_by_gemm(
    qp: torch.Tensor,
    kp: torch.Tensor,
    lse: torch.Tensor,
    *,
    stride: int,
    rows_per_block: int,
    row0: int,
    n_rows: int,
    k_len: int,
    q_offset: int,
    n_kb: int,
    scale_log2: float,
    fp8: bool,
    chunk_rows: int,
    bm: int = 128,
    bn: int = 256,
    num_warps: int = 8,
    streams: int = 1,
    grouped: bool = False,
    epilogue_cols: int = 1,
    grouped_kernel: bool = True,
    last_first: bool = True,
) -> None:
    """Fill ``lse [Hq, n_rows, n_kb]`` from the zero-padded token-major operands of ``estimate._tma_operands``
    (queries from absolute reshaped row ``row0``, keys from token 0) by library GEMMs, ``chunk_rows`` reshaped
    query rows per GEMM; ``rows_per_block`` = B / S; ``bm x bn`` logits per epilogue program. ``streams`` > 1
    (CUDA): the (KV head, chunk) pairs go round-robin over that many streams (``kernels.streams``), each pair's
    GEMM and epilogue on one stream (its logits buffer is allocated and freed there), so an epilogue overlaps
    the next GEMM. ``grouped``: per chunk one batched GEMM over every KV head (``torch._scaled_grouped_mm`` in fp8,
    a strided batched ``matmul`` in bf16) and one epilogue launch, 2 launches a chunk instead of 2 per (KV head,
    chunk): fewer host launches where they, not the GPU, set the pace (logits buffer: every KV head's).
    ``grouped_kernel`` False (with ``grouped``): the chunk's GEMM as one plain library GEMM per KV head into that
    buffer (cuBLAS's, 3.3 ms at 128K on an H100 where CUTLASS's grouped fp8 kernel took 4.1), the epilogue still one
    launch (``hkv + 1`` launches a chunk).
    ``epilogue_cols``: ``bm x bn`` tiles per epilogue program, along the row (fewer programs, loads of the next tile
    in flight while one is reduced). ``last_first``: the chunks from the last query rows to the first (below)."""
    hq, hkv = qp.shape[1], kp.shape[1]
    group = hq // hkv
    if chunk_rows <= 0 or chunk_rows % GEMM_ALIGN:
        raise ValueError(f"gemm_chunk must be a positive multiple of {GEMM_ALIGN}, got {chunk_rows}")
    if streams < 1:
        raise ValueError(f"gemm_streams must be >= 1, got {streams}")
    if epilogue_cols < 1:
        raise ValueError(f"gemm_epilogue_cols must be >= 1, got {epilogue_cols}")
    key_rows = triton.cdiv(row0 + n_rows, GEMM_ALIGN) * GEMM_ALIGN  # the last query row's causal keys, aligned
    q_rows = triton.cdiv(n_rows, GEMM_ALIGN) * GEMM_ALIGN  # zero rows past n_rows (left out of the sums)
    q8, q_scale = pack_rows(qp, stride, q_rows, group=group, reverse=True, fp8=fp8)
    k8, k_scale = pack_rows(kp, stride, key_rows, group=1, reverse=False, fp8=fp8)

    def epilogue(logits: torch.Tensor, a: int, h0: int) -> None:  # logits [KV heads, n_chunk, group, n_cols] -> lse
        heads, n_chunk, _, n_cols = logits.shape
        grid = (triton.cdiv(n_chunk, bm), heads * group, triton.cdiv(n_cols, bn * epilogue_cols))
        _lse_from_logits_kernel[grid](
            logits, lse, k_len, q_offset, row0, n_rows, n_kb, scale_log2, row0 + a, n_chunk, n_cols,
            logits.stride(0), logits.stride(1), logits.stride(2), lse.stride(0), lse.stride(1), h0,
            GROUP=group, S=stride, R=rows_per_block, BM=bm, BN=bn, COLS=epilogue_cols, num_warps=num_warps,
        )

    def chunk(a: int, heads: slice) -> None:  # the logits of query rows a .. a + chunk_rows of these KV heads, epilogue
        n_chunk = min(chunk_rows, q_rows - a)
        n_cols = min(key_rows, triton.cdiv(row0 + a + n_chunk, GEMM_ALIGN) * GEMM_ALIGN)
        qa = q8[heads, a : a + n_chunk].flatten(1, 2)  # [heads, n_chunk * group, S * D]
        kb = k8[heads, :n_cols, 0]  # [heads, n_cols, S * D]
        # each KV head's operands as views made in one op per operand, not one per head and operand (host time)
        q_g, k_t = qa.unbind(0), kb.transpose(-1, -2).unbind(0)
        if fp8:
            qs, ks = q_scale[heads, a : a + n_chunk].flatten(1), k_scale[heads, :n_cols, 0]
            s_a, s_b = qs[:, :, None].unbind(0), ks[:, None, :].unbind(0)

        def plain(g: int, out: torch.Tensor | None = None) -> torch.Tensor:  # KV head g: the library's plain GEMM
            if fp8:
                return torch._scaled_mm(q_g[g], k_t[g], scale_a=s_a[g], scale_b=s_b[g], out_dtype=torch.bfloat16,
                                        use_fast_accum=True, out=out)  # fmt: skip
            return torch.matmul(q_g[g], k_t[g], out=out)

        if not grouped:
            logits = plain(0)
        elif not grouped_kernel:  # one plain GEMM per KV head into the chunk's buffer, still one epilogue launch
            logits = torch.empty((*qa.shape[:2], n_cols), dtype=torch.bfloat16 if fp8 else qa.dtype, device=qa.device)
            for g, out in enumerate(logits.unbind(0)):
                plain(g, out=out)
        elif fp8:
            logits = torch._scaled_grouped_mm(qa, kb.transpose(-1, -2), scale_a=qs.contiguous(), scale_b=ks.contiguous(),
                                              out_dtype=torch.bfloat16, use_fast_accum=True)  # fmt: skip
        else:
            logits = qa @ kb.transpose(-1, -2)
        epilogue(logits.view(-1, n_chunk, group, n_cols), a, heads.start * group)

    head_sets = [slice(0, hkv)] if grouped else [slice(g, g + 1) for g in range(hkv)]
    # The last chunk first: a chunk's causal GEMMs grow with its position, so in this order each chunk keeps the GPU busy
    # longer than the host takes to enqueue the next (9 launches a chunk), and the small early chunks are queued before
    # the GPU reaches them. First chunk first, the GPU waited on the host through the small chunks: an H100 whose host
    # enqueued a 128K call in ~4 ms took 7.72 ms for 5.59 ms of kernels (bench/results/xattn_curve/fa3_streams.log).
    # This order is not timed on a GPU yet (no device time was left; ``last_first=False`` is the order before, for
    # bench/xattn_fa3_streams.py to time both in one run); the same scores either way (tests).
    starts = range(0, q_rows, chunk_rows)
    calls = [functools.partial(chunk, a, heads) for a in (reversed(starts) if last_first else starts)
             for heads in head_sets]  # fmt: skip
    if streams == 1 or not qp.is_cuda:
        for call in calls:
            call()
    else:  # q8 / k8 / scales are freed on return: round_robin joins every stream that read them first
        round_robin(calls, streams, qp.device)
