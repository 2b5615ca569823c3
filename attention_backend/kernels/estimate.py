"""Fused XAttention estimation on the GPU: antidiagonal scores per (query block, key block).

Reshaped row ``i`` of the queries is the ``S`` tokens ``q[i*S + S-1-t]`` (t = 0..S-1) and reshaped row
``j`` of the keys is ``k[j*S + t]``, both in ABSOLUTE token positions of the sequence. The logit of
``(i, j)`` is ``sum_t q[i*S+S-1-t] . k[j*S+t] * scale / S`` (scale defaults to ``D ** -0.5``),
causal in the reshaped space (``j <= i``); each query row is softmaxed in fp32 and the probabilities are summed per
``(B/S) x (B/S)`` tile into one score per ``B x B`` block. Tokens outside the sequence (``>= k_len``) or
before the queries of this call (``< q_offset``) are zero vectors; a query row with none of its ``S``
tokens among the queries is left out of the sums.

Two launches, and the ``(Lq/S) x (Lk/S)`` score matrix never reaches HBM:
1. ``_xattn_lse_tma_kernel`` (sm_90+: TMA loads) or ``_xattn_lse_flat_kernel`` (pointer loads): per
   (head, tile of query rows) one pass over the causal key rows; for each key tile it writes, per query
   row and key block, ``log2 sum 2^(logit*log2e)`` of that block (``[Hq, rows, n_kb]`` fp32: Lk/B
   floats per row instead of Lk/S). Both are one software-pipelined loop over (key tile, offset, head-dim
   slice). The TMA kernel is the faster one: the loads, not the softmax epilogue, were the limit
   (figures: ``bench/xattn_est_sweep.py``, ``bench/results/xattn_kernels/notes.md``); its 2-D boxes keep both
   MMA operands in shared memory.
2. ``_xattn_block_score_kernel``: per (head, query block) it turns those into the row's softmax mass
   per key block and sums the block's rows.

``fp8=True`` (TMA kernel only, sm_90+): the GEMM of launch 1 takes fp8 (e4m3) copies of the queries and keys,
each head scaled to e4m3's range by its own absolute maximum (the logits are scaled back in the epilogue), for
twice the tensor-core rate of bf16. On real captures this moved 0.3-0.6 % of the selected blocks and left
density and recall unchanged to three decimals (bench/results/xattn_kernels/notes.md, "fp8 estimation").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from attention_backend.fp8 import to_fp8_per_head
from attention_backend.kernels.checks import block_grid, check_block_size, check_out, check_query
from attention_backend.kernels.kv_view import PagedKV

LOG2E = 1.4426950408889634
# The estimation kernels' integer arguments that change with every request (lengths, offsets, the lse
# buffer's strides): Triton would otherwise compile again for each pattern of divisibility by 16.
PER_REQUEST_LSE = ["k_len", "q_offset", "row0", "n_rows", "n_kb", "tiles_per_split", "s_lh", "s_lr"]


@dataclass(frozen=True)
class EstimateTiles:
    """Launch shape of the estimation GEMM: ``bm`` query rows x ``bn`` key rows (reshaped) per step.

    The defaults are the TMA kernel's fastest shape in ``bench/xattn_est_sweep.py`` (H100, 2026-12-06: 4 stages,
    10.05 vs 10.64 ms with 3 at 128K); ``POINTER_TILES`` (3 stages: fits the shared memory of GPUs before sm_90)
    is used on GPUs without TMA."""

    bm: int = 128
    bn: int = 256
    num_warps: int = 8
    num_stages: int = 4
    bk: int = 64  # head-dim slice per MMA step (0: the whole head dim)
    tma: bool = True  # TMA tensor-descriptor loads (keys gathered contiguous first); False: pointer loads
    splits: int = 0  # key-range splits per (head, query tile); 0: enough programs to fill the GPU twice
    gemm: bool = False  # the GEMM by the vendor library + a Triton epilogue (kernels.estimate_gemm): bm x bn logits
    #                     per epilogue program, num_warps its warps; num_stages, bk, tma and splits unused
    gemm_chunk: int = 1024  # with gemm: reshaped query rows per GEMM (bounds the logits buffer)
    gemm_streams: int = 1  # with gemm on CUDA: (GEMM, epilogue) pairs over this many streams, so one pair's
    #                        epilogue overlaps the next pair's GEMM (one logits buffer in flight per stream)
    gemm_grouped: bool = False  # with gemm: one batched GEMM + one epilogue per chunk over every KV head (2 launches a
    #                             chunk, not 2 per KV head and chunk; the logits buffer holds every KV head's)
    gemm_epilogue_cols: int = 1  # with gemm: bm x bn logit tiles per epilogue program, along the row
    gemm_grouped_kernel: bool = True  # with gemm_grouped: the library's grouped GEMM kernel; False: one plain GEMM per
    #                                   KV head into the chunk's buffer (the epilogue still one launch a chunk)
    gemm_last_first: bool = True  # with gemm: the last (longest) chunk of query rows first, so each chunk's GEMMs
    #                               outlast the host's enqueue of the next (kernels.estimate_gemm.lse_by_gemm)


POINTER_TILES = EstimateTiles(tma=False, num_stages=3)
FP8_GEMM_TILES = EstimateTiles(bm=64, bn=128, num_warps=8, gemm=True, gemm_chunk=1024, gemm_grouped=True,
                               gemm_grouped_kernel=False)
"""fp8 estimation at S >= 16 on sm_90: the library GEMM in 1,024-row chunks on one stream, one plain GEMM per KV head
into the chunk's buffer and one epilogue launch a chunk (64 x 128 on 8 warps). H100, 2026-12-07 16:21 UTC
(bench/results/xattn_kernels/xattn_est_sweep_gemm_h100.log): 0.99 / 2.02 / 5.92 ms at 32K / 64K / 128K, the
smallest sum over the three lengths of the 32 fp8 variants (the library's grouped GEMM kernel, the default before:
0.77 / 2.03 / 6.61 ms; cuBLAS's plain fp8 GEMM took 3.5 ms of the 5.92 at 128K, its grouped one 4.1). The fused
kernel takes 1.00 / 2.83 / 10.44 ms on bf16 operands (13:46 UTC sweep)."""


@functools.cache
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (1 off CUDA: the interpreter runs one program at a time)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def default_tiles(device: torch.device, *, fp8: bool = False, stride: int = 16) -> EstimateTiles:
    """TMA tiles on sm_90+ (and under the Triton interpreter), the pointer-load flat kernel before; ``fp8`` at
    S >= 16 on sm_90 (where it was measured): ``FP8_GEMM_TILES``, the fused kernel gains nothing from fp8 there."""
    if device.type != "cuda":
        return EstimateTiles()
    major, minor = torch.cuda.get_device_capability(device)
    if fp8 and stride >= 16 and (major, minor) == (9, 0):
        return FP8_GEMM_TILES
    return EstimateTiles() if major >= 9 else POINTER_TILES


@triton.jit
def _load_kv_rows(cache_ptr, bt_ptr, tok, k_len, page_size, s_page, s_tok, kvh_off, d):
    """Rows ``tok`` ([N] absolute positions) of one KV head from the paged cache; zeros past k_len."""
    ok = tok < k_len
    page = tl.load(bt_ptr + tok // page_size, mask=ok, other=0)
    row = page.to(tl.int64) * s_page + (tok % page_size).to(tl.int64) * s_tok + kvh_off
    return tl.load(cache_ptr + row[:, None] + d[None, :], mask=ok[:, None], other=0.0)


@triton.jit
def _store_tile_lse(acc, rows, row_ok, j0, j_end, lse_ptr, row0, n_kb, scale_log2, s_lr, BM: tl.constexpr,
                    BN: tl.constexpr, R: tl.constexpr):
    """Epilogue of one (query rows x BN key rows) tile: causal mask, then per query row and key block
    ``log2 sum 2^(logit * log2e)`` into ``lse_ptr`` (this head's ``[rows, n_kb]`` slice)."""
    cols = j0 + tl.arange(0, BN)
    s = tl.where(cols[None, :] <= rows[:, None], acc * scale_log2, float("-inf"))
    m = tl.max(s, 1)
    m = tl.where(m == float("-inf"), 0.0, m)
    p = tl.exp2(s - m[:, None])
    blk = tl.sum(tl.reshape(p, (BM, BN // R, R)), 2)
    lse = m[:, None] + tl.log2(blk)
    kb = j0 // R + tl.arange(0, BN // R)
    ptrs = lse_ptr + (rows - row0).to(tl.int64)[:, None] * s_lr + kb[None, :]
    tl.store(ptrs, lse, mask=row_ok[:, None] & (kb[None, :] * R < j_end) & (kb[None, :] < n_kb))


@triton.jit
def _program_tile(row0, n_rows, q_offset, k_len, tiles_per_split, S: tl.constexpr, BM: tl.constexpr,
                  BN: tl.constexpr):
    """This program's query tile (longest first) and key-tile range: ``(tile, rows, row_ok, j_end, kt0, kt1)``;
    key tiles ``[kt0, kt1)`` of the tile's causal ``cdiv(j_end, BN)`` (program axis 2 picks the split)."""
    tile = tl.cdiv(n_rows, BM) - 1 - tl.program_id(0)
    rows = row0 + tile * BM + tl.arange(0, BM)
    row_ok = (rows * S + S > q_offset) & (rows * S < k_len) & (rows < row0 + n_rows)
    j_end = row0 + tile * BM + BM
    kt0 = tl.program_id(2) * tiles_per_split
    kt1 = tl.minimum(tl.cdiv(j_end, BN), kt0 + tiles_per_split)
    return tile, rows, row_ok, j_end, kt0, kt1


@triton.jit(do_not_specialize=PER_REQUEST_LSE)
def _xattn_lse_flat_kernel(
    q_ptr, k_ptr, bt_ptr, lse_ptr,
    k_len, q_offset, page_size, row0, n_rows, n_kb, scale_log2, tiles_per_split,
    s_qt, s_qh, s_kp, s_kt, s_kh, s_lh, s_lr,
    GROUP: tl.constexpr, S: tl.constexpr, R: tl.constexpr, D: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    """Per (head, tile of BM query rows): ONE loop over (key tile, antidiagonal offset t, head-dim slice),
    so the software pipeline keeps loading across key tiles; each key tile's softmax epilogue runs under
    ``if`` on its last step (the persistent-matmul pattern). Keys are read row by row through the block
    table (any page size). For GPUs without TMA; ``_xattn_lse_tma_kernel`` is the same loop with TMA loads.
    Program axis 2 splits the causal key tiles into ranges of ``tiles_per_split``: every key tile's
    epilogue writes only its own key blocks, so the splits need no reduction (short chunks and few heads
    would otherwise leave most SMs idle)."""
    tile, rows, row_ok, j_end, kt0, kt1 = _program_tile(row0, n_rows, q_offset, k_len, tiles_per_split, S, BM, BN)
    h = tl.program_id(1)
    kvh_off = (h // GROUP).to(tl.int64) * s_kh
    dk = tl.arange(0, BK)
    NSL: tl.constexpr = D // BK
    NK: tl.constexpr = S * NSL
    q_base = q_ptr + h.to(tl.int64) * s_qh
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for it in range(kt0 * NK, kt1 * NK):
        kk = it % NK
        j0 = (it // NK) * BN
        t = kk // NSL
        d0 = (kk % NSL) * BK
        qtok = rows * S + (S - 1 - t)
        qm = (qtok >= q_offset) & (qtok < k_len)
        qt = tl.load(
            q_base + (qtok - q_offset).to(tl.int64)[:, None] * s_qt + d0 + dk[None, :],
            mask=qm[:, None], other=0.0,
        )
        cols = j0 + tl.arange(0, BN)
        kt = _load_kv_rows(k_ptr, bt_ptr, cols * S + t, k_len, page_size, s_kp, s_kt, kvh_off + d0, dk)
        acc = tl.dot(qt, tl.trans(kt), acc)
        if kk == NK - 1:  # the key tile's last step: its softmax epilogue
            _store_tile_lse(acc, rows, row_ok, j0, j_end, lse_ptr + h.to(tl.int64) * s_lh, row0, n_kb, scale_log2,
                            s_lr, BM, BN, R)
            acc = tl.zeros((BM, BN), dtype=tl.float32)


@triton.jit(do_not_specialize=PER_REQUEST_LSE)
def _xattn_lse_tma_kernel(
    q_desc, k_desc, lse_ptr, head_scale_ptr,
    k_len, q_offset, row0, n_rows, n_kb, scale_log2, tiles_per_split, s_lh, s_lr, s_qt, s_qh, s_kt, s_kh,
    GROUP: tl.constexpr, S: tl.constexpr, R: tl.constexpr, D: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, HEAD_SCALE: tl.constexpr,
):
    """The flat kernel with TMA loads: ``q_desc`` views the queries from absolute token ``row0 * S``
    (zeros before ``q_offset``) as 2-D ``[n_rows, S * s_qt]`` (one reshaped row of S tokens per row), and
    ``k_desc`` the keys (zeros from ``k_len``) as ``[rows, S * s_kt]``; offset ``t``, head ``h`` and slice
    ``d0`` of every row in a tile are then one ``[rows, BK]`` box at column ``t * s_qt + h * s_qh + d0``.
    2-D boxes feed the MMA from shared memory as they land (a 4-D box needs a reshape, which Triton 3.6
    does through registers: the queries took a shared-memory round trip per step). Key-range
    splits on program axis 2 as in the flat kernel. ``HEAD_SCALE``: the operands are scaled per head (fp8);
    ``head_scale_ptr[h]`` turns this head's accumulator back into logits."""
    tile, rows, row_ok, j_end, kt0, kt1 = _program_tile(row0, n_rows, q_offset, k_len, tiles_per_split, S, BM, BN)
    h = tl.program_id(1)
    kvh = h // GROUP
    if HEAD_SCALE:
        scale_log2 = scale_log2 * tl.load(head_scale_ptr + h)
    NSL: tl.constexpr = D // BK
    NK: tl.constexpr = S * NSL
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for it in range(kt0 * NK, kt1 * NK):
        kk = it % NK
        j0 = (it // NK) * BN
        t = kk // NSL
        d0 = (kk % NSL) * BK
        qt = q_desc.load([tile * BM, (S - 1 - t) * s_qt + h * s_qh + d0])
        kt = k_desc.load([j0, t * s_kt + kvh * s_kh + d0])
        acc = tl.dot(qt, kt.T, acc)
        if kk == NK - 1:  # the key tile's last step: its softmax epilogue
            _store_tile_lse(acc, rows, row_ok, j0, j_end, lse_ptr + h.to(tl.int64) * s_lh, row0, n_kb, scale_log2,
                            s_lr, BM, BN, R)
            acc = tl.zeros((BM, BN), dtype=tl.float32)


def _token_major(x: torch.Tensor) -> bool:
    """Whether ``x [tokens, H, D]`` can be viewed as 2-D rows of tokens: every head of a token lies inside its
    token stride (NHD, or a slice of a fused qkv buffer), so a head's slice is a column range of the row."""
    return x.stride(2) == 1 and x.stride(1) >= x.shape[2] and (x.shape[1] - 1) * x.stride(1) + x.shape[2] <= x.stride(0)


def row_descriptor(x: torch.Tensor, stride: int, block_rows: int, bk: int) -> object:
    """The TMA kernel's 2-D view of a token-major ``x [tokens, H, D]`` (:func:`_token_major`, tokens a multiple of
    ``stride``): one row of ``stride`` tokens per row, boxes of ``block_rows`` rows x ``bk`` columns."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    row = x.stride(0) * stride
    return TensorDescriptor(x, [x.shape[0] // stride, row], [row, 1], [block_rows, bk])


def _tma_operands(q: torch.Tensor, kv: PagedKV, q_offset: int, row0: int, n_rows: int, stride: int):
    """Queries from absolute token ``row0 * stride`` and keys from token 0, as token-major ``[tokens, H, D]``
    tensors of whole rows of ``S`` tokens for the TMA kernel's 2-D views. Zero-copy when the queries start at
    ``row0 * stride``, fill whole rows and are token-major, and the keys are one token-major page of whole rows;
    else a zero-padded copy (the queries of a chunk not ending on a row, head-major layouts, the keys of a paged
    cache: gathered in block-table order)."""
    lq, hq, d = q.shape
    start = q_offset - row0 * stride
    if start == 0 and lq == n_rows * stride and _token_major(q):
        qp = q
    else:
        qp = torch.zeros((n_rows * stride, hq, d), dtype=q.dtype, device=q.device)
        qp[start : start + lq] = q
    k_len, page = kv.k_len, kv.page_size
    n_krows = triton.cdiv(k_len, stride)
    kc = kv.key_cache
    if kc.shape[0] == 1 and k_len % stride == 0 and page == k_len and _token_major(kc[0]):
        kp = kc[0]
    else:
        n_pages = triton.cdiv(k_len, page)
        gathered = kc.index_select(0, kv.block_table[:n_pages].long()).reshape(n_pages * page, *kc.shape[2:])
        if gathered.shape[0] >= n_krows * stride:  # the pages cover whole rows: zero only past the sequence
            kp = gathered[: n_krows * stride]
            if k_len < kp.shape[0]:
                kp[k_len:] = 0
        else:
            kp = torch.zeros((n_krows * stride, kv.num_kv_heads, d), dtype=kc.dtype, device=kc.device)
            kp[:k_len] = gathered[:k_len]
    return qp, kp


@triton.jit(do_not_specialize=["k_len", "q_offset", "first_qb", "n_kb", "s_lh", "s_lr", "s_sh", "s_sq"])
def _xattn_block_score_kernel(
    lse_ptr, score_ptr,
    k_len, q_offset, first_qb, n_kb,
    s_lh, s_lr, s_sh, s_sq,
    S: tl.constexpr, R: tl.constexpr, NKB: tl.constexpr,
):
    qb_local = tl.program_id(0)
    h = tl.program_id(1)
    qb = first_qb + qb_local
    kb = tl.arange(0, NKB)
    kb_ok = kb <= qb
    total = tl.zeros((NKB,), dtype=tl.float32)
    for r in range(R):
        row = qb * R + r
        if (row * S + S > q_offset) & (row * S < k_len):
            ptrs = lse_ptr + h.to(tl.int64) * s_lh + (row - first_qb * R).to(tl.int64) * s_lr + kb
            lse = tl.load(ptrs, mask=kb_ok, other=float("-inf"))
            m = tl.max(lse, 0)
            row_lse = m + tl.log2(tl.sum(tl.exp2(lse - m), 0))
            total += tl.exp2(lse - row_lse)
    tl.store(score_ptr + h.to(tl.int64) * s_sh + qb_local.to(tl.int64) * s_sq + kb, total, mask=kb < n_kb)


def estimate_block_scores(
    q: torch.Tensor,
    kv: PagedKV,
    *,
    block_size: int,
    stride: int,
    q_offset: int = 0,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    tiles: EstimateTiles | None = None,
    fp8: bool = False,
) -> torch.Tensor:
    """Antidiagonal block scores of one sequence, on CUDA (``fp8``: the GEMM on e4m3 copies, module docstring).

    q: ``[Lq, Hq, D]`` fp16/bf16, the last ``Lq`` positions of the ``kv.k_len``-token context
    (``q_offset = k_len - Lq``). Returns (or fills ``out``) ``[Hq, n_qb, n_kb]`` fp32, rows the absolute
    query blocks ``q_offset // B .. ceil(k_len / B) - 1``, columns the key blocks; each row holds the
    softmax mass of its reshaped query rows per key block (0 above the diagonal). Matches
    ``reference.ref_estimate_block_scores``.
    """
    check_query(q, kv, q_offset)
    check_block_size(block_size, stride)
    k_len = kv.k_len
    lq, hq, d = q.shape
    first_qb, n_qb, n_kb = block_grid(k_len, q_offset, block_size)
    check_out(out, (hq, n_qb, n_kb), torch.float32, q.device)
    tiles = tiles if tiles is not None else default_tiles(q.device, fp8=fp8, stride=stride)
    r = block_size // stride
    n_rows = n_qb * r
    lse = torch.empty((hq, n_rows, n_kb), dtype=torch.float32, device=q.device)
    scale_log2 = LOG2E * (scale if scale is not None else 1.0 / math.sqrt(d)) / stride

    if tiles.bm % r or tiles.bn % r:
        raise ValueError(f"tile rows must be multiples of B/S={r}, got {tiles}")
    bk = tiles.bk or d
    if d % bk:
        raise ValueError(f"head-dim slice bk={bk} must divide the head dim {d}")
    n_tiles = triton.cdiv(n_rows, tiles.bm)
    key_tiles = triton.cdiv(first_qb * r + n_tiles * tiles.bm, tiles.bn)  # the last query tile's causal key tiles
    splits = tiles.splits or triton.cdiv(2 * _sm_count(q.device), n_tiles * hq)
    per_split = triton.cdiv(key_tiles, max(1, min(splits, key_tiles)))
    grid = (n_tiles, hq, triton.cdiv(key_tiles, per_split))
    shape = dict(GROUP=hq // kv.num_kv_heads, S=stride, R=r, D=d, BM=tiles.bm, BN=tiles.bn)
    launch = dict(num_warps=tiles.num_warps, num_stages=tiles.num_stages)
    if fp8 and not (tiles.tma or tiles.gemm):
        raise ValueError("fp8 estimation needs the TMA kernel (sm_90+) or the library GEMM: tiles.tma is False")
    if tiles.gemm or tiles.tma:
        qp, kp = _tma_operands(q, kv, q_offset, first_qb * r, n_rows, stride)
    if tiles.gemm:
        from attention_backend.kernels.estimate_gemm import lse_by_gemm

        lse_by_gemm(qp, kp, lse, stride=stride, rows_per_block=r, row0=first_qb * r, n_rows=n_rows, k_len=k_len,
                    q_offset=q_offset, n_kb=n_kb, scale_log2=scale_log2, fp8=fp8, chunk_rows=tiles.gemm_chunk,
                    bm=tiles.bm, bn=tiles.bn, num_warps=tiles.num_warps, streams=tiles.gemm_streams,
                    grouped=tiles.gemm_grouped, epilogue_cols=tiles.gemm_epilogue_cols,
                    grouped_kernel=tiles.gemm_grouped_kernel, last_first=tiles.gemm_last_first)
    elif tiles.tma:
        head_scale = lse  # unused unless fp8 (any pointer will do)
        if fp8:
            (qp, q_scale), (kp, k_scale) = to_fp8_per_head(qp), to_fp8_per_head(kp)
            group = hq // kv.num_kv_heads
            head_scale = 1.0 / (q_scale * k_scale.repeat_interleave(group))
        q_desc, k_desc = row_descriptor(qp, stride, tiles.bm, bk), row_descriptor(kp, stride, tiles.bn, bk)
        _xattn_lse_tma_kernel[grid](
            q_desc, k_desc, lse, head_scale, k_len, q_offset, first_qb * r, n_rows, n_kb, scale_log2, per_split,
            lse.stride(0), lse.stride(1), qp.stride(0), qp.stride(1), kp.stride(0), kp.stride(1),
            **shape, BK=bk, HEAD_SCALE=fp8, **launch,
        )
    else:
        kc = kv.key_cache
        _xattn_lse_flat_kernel[grid](
            q, kc, kv.block_table, lse,
            k_len, q_offset, kv.page_size, first_qb * r, n_rows, n_kb, scale_log2, per_split,
            q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2), lse.stride(0), lse.stride(1),
            **shape, BK=bk, **launch,
        )
    scores = out if out is not None else torch.empty((hq, n_qb, n_kb), dtype=torch.float32, device=q.device)
    return block_scores_from_lse(lse, scores, k_len=k_len, q_offset=q_offset, first_qb=first_qb, stride=stride)


def block_scores_from_lse(
    lse: torch.Tensor, scores: torch.Tensor, *, k_len: int, q_offset: int, first_qb: int, stride: int
) -> torch.Tensor:
    """Fill ``scores [Hq, n_qb, n_kb]`` from the per-key-block log2-sum-exp of the reshaped query rows,
    ``lse [Hq, n_qb * R, n_kb]`` (R = rows per block): each row's softmax mass per key block. One compile
    per power of two of ``n_kb`` (the row is held in registers); ``kernels.warmup`` compiles them ahead."""
    hq, n_qb, n_kb = scores.shape
    _xattn_block_score_kernel[(n_qb, hq)](
        lse, scores,
        k_len, q_offset, first_qb, n_kb,
        lse.stride(0), lse.stride(1), scores.stride(0), scores.stride(1),
        S=stride, R=lse.shape[1] // n_qb, NKB=triton.next_power_of_2(n_kb),
    )
    return scores
