"""Block-sparse flash attention for prefill, reading K/V from the paged cache (one sequence per launch).

One program per (absolute query block, query head): it walks the kept key blocks of its row (ascending,
from ``select_blocks_indexed`` or ``mask_to_index``) with an fp32 online softmax; a key block that
reaches past the first query of the block gets the causal token mask. GQA reads KV head
``h // (Hq / Hkv)``: K/V are never repeated. A query row with no kept key is written as zeros.

Two kernels, chosen by ``AttnTiles.kernel``:

- ``pointer`` (``_block_sparse_attn_kernel`` below): pointer loads through the block table, any page size,
  any GPU;
- ``tma`` (``sparse_attention_tma``): TMA tile loads, sm_90+ only, and every ``bn``-row key tile must lie
  in one page: ``page_size % bn == 0`` (vLLM ``--block-size 128`` with B = 128), or the whole context in
  the first page (a contiguous ``PagedKV.from_contiguous``); cache base and strides 16-byte aligned.

``default_attn_tiles`` is the rule when no tiles are given: ``HOPPER_TILES`` where the ``tma`` kernel can
run (capability >= 9.0, or the Triton interpreter, and the layout above), ``POINTER_TILES`` elsewhere.
Tiles that ask for ``tma`` where it cannot run raise ValueError with the reason: no silent fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import triton
import triton.language as tl

from attention_backend.kernels.checks import (
    block_grid,
    check_block_size,
    check_out,
    check_query,
    interpreting,
)
from attention_backend.kernels.estimate import LOG2E, _load_kv_rows
from attention_backend.kernels.kv_view import PagedKV
from attention_backend.kernels.sparse_attention_tma import _block_sparse_attn_tma_kernel, _kept_row

TMA_KEY_ROWS = (0, 32, 64, 128)


@dataclass(frozen=True)
class AttnTiles:
    """Kernel and launch shape of the sparse attention (query tile: one B-row block).

    ``kernel``: ``pointer`` (any GPU, any page size) or ``tma`` (sm_90+, page-aligned caches: see the module
    docstring). The last three fields are for ``tma`` only: ``bn`` key rows per step (0: the whole block
    B; B must be a multiple), ``warp_specialize`` (one loop over every kept block, diagonal included, that
    Triton splits into a producer and two 64-row consumer warpgroups at ``num_warps=4``; the Triton
    interpreter runs the same loop without the split; a partly filled last key block goes to the pointer
    kernel) and ``qk_ahead`` (issue the next
    step's ``q k^T`` before this step's softmax; excludes warp specialisation)."""

    num_warps: int = 8
    num_stages: int = 2  # pointer: fastest of 5 launch shapes (bench/results/xattn_kernels/notes.md)
    kernel: Literal["pointer", "tma"] = "pointer"
    bn: int = 0
    warp_specialize: bool = False
    qk_ahead: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in ("pointer", "tma"):
            raise ValueError(f"AttnTiles.kernel must be 'pointer' or 'tma', got {self.kernel!r}")
        if self.bn not in TMA_KEY_ROWS:
            raise ValueError(f"AttnTiles.bn must be one of {TMA_KEY_ROWS}, got {self.bn}")
        if self.kernel == "pointer" and (self.bn or self.warp_specialize or self.qk_ahead):
            raise ValueError(f"bn, warp_specialize and qk_ahead are options of the tma kernel, got {self}")
        if self.qk_ahead and self.warp_specialize:
            raise ValueError(f"qk_ahead and warp_specialize exclude each other, got {self}")


POINTER_TILES = AttnTiles()
# Where the tma kernel can run: TMA loads, three stages (bench/results/xattn_sparse_variants/: on an H100, 3-13 %
# faster than the pointer kernel at 15 of the 16 points measured, 1 % slower at 128K density 0.1; same outputs).
HOPPER_TILES = AttnTiles(kernel="tma", num_stages=3)
# At head dim 64 four warps: on an H100, SmolLM2's shape (9 q / 3 KV heads), 1.30-1.36x faster than eight at
# 128K and 1.2-1.4x at 32K (78-79 % of FA3 at 128K; bench/results/xattn_sparse_variants/, 2026-12-06).
HOPPER_TILES_SMALL_D = AttnTiles(kernel="tma", num_warps=4, num_stages=3)


# Measured, not guessed: the warp-specialised variant compiles for sm_90 but never returns on the card once the loop
# runs past one key block, so it is refused on a GPU (a server would hang) and kept for the interpreter tests.
WS_HANGS = (
    "warp_specialize hangs on the GPU (NVIDIA H100, Triton 3.6.0, 2026-12-05: the kernel tests with one key block "
    "passed, the first with two did not return in 100 s; bench/results/xattn_sparse_variants/notes.md); "
    "it runs under TRITON_INTERPRET=1 only"
)


def tma_unsupported(q: torch.Tensor, kv: PagedKV, bn: int) -> str | None:
    """Why the ``tma`` kernel cannot run on ``q``/``kv`` with ``bn``-row key tiles, or None if it can."""
    if q.is_cuda and torch.cuda.get_device_capability(q.device)[0] < 9:
        cap = ".".join(map(str, torch.cuda.get_device_capability(q.device)))
        return f"TMA loads need compute capability >= 9.0, got {cap}"
    if not q.is_cuda and not interpreting():
        return f"TMA loads need CUDA tensors, got {q.device}"
    if q.stride(1) != q.shape[2]:
        return f"TMA views q as [Lq, Hq * D]: heads must be contiguous, got strides {q.stride()}"
    if q.shape[2] > 128:
        return f"the tma kernel's tiles fit shared memory for head dims <= 128, got {q.shape[2]}"
    if kv.page_size % bn and kv.k_len > kv.page_size:
        return f"a {bn}-row key tile must lie in one page: page_size % {bn} == 0, got page_size {kv.page_size}"
    for name, t in (("q", q), ("key_cache", kv.key_cache), ("value_cache", kv.value_cache)):
        item = t.element_size()
        if t.data_ptr() % 16 or any(st * item % 16 for st in t.stride()[:-1]):
            return f"TMA needs {name} base and strides 16-byte aligned, got strides {t.stride()} ({item} B items)"
    return None


def default_attn_tiles(q: torch.Tensor, kv: PagedKV, block_size: int) -> AttnTiles:
    """The documented rule: ``HOPPER_TILES`` (``HOPPER_TILES_SMALL_D`` at head dims <= 64) where the tma kernel
    can run, else ``POINTER_TILES``."""
    tiles = HOPPER_TILES_SMALL_D if q.shape[-1] <= 64 else HOPPER_TILES
    if tiles.kernel == "tma" and tma_unsupported(q, kv, tiles.bn or block_size) is not None:
        return POINTER_TILES
    return tiles


@triton.jit
def _load_block_rows(
    cache_ptr, bt_ptr, k0, kpos, k_len, page_size, s_page, s_tok, head_off, d, PAGE_ALIGNED: tl.constexpr
):
    """Rows ``kpos = k0 + arange(B)`` (one key block) of one KV head. ``PAGE_ALIGNED``: the block lies in one page
    (page_size a multiple of B), so one block-table entry gives an affine tile Triton can vectorise and
    pipeline; otherwise each row is looked up."""
    if PAGE_ALIGNED:
        page = tl.load(bt_ptr + k0 // page_size).to(tl.int64)
        rows = page * s_page + (kpos - k0 + k0 % page_size).to(tl.int64) * s_tok + head_off
        ok = kpos < k_len
        return tl.load(cache_ptr + rows[:, None] + d[None, :], mask=ok[:, None], other=0.0)
    return _load_kv_rows(cache_ptr, bt_ptr, kpos, k_len, page_size, s_page, s_tok, head_off, d)


@triton.jit
def _attend_block(
    q, kb, qpos, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, k_len, page_size,
    s_kp, s_kt, k_head, s_vp, s_vt, v_head, d, scale_log2,
    B: tl.constexpr, CAUSAL: tl.constexpr, PAGE_ALIGNED: tl.constexpr,
):
    """One key block of the online softmax; ``CAUSAL`` adds the token mask (the diagonal block)."""
    kpos = kb * B + tl.arange(0, B)
    k = _load_block_rows(k_ptr, bt_ptr, kb * B, kpos, k_len, page_size, s_kp, s_kt, k_head, d, PAGE_ALIGNED)
    s = tl.dot(q, tl.trans(k)) * scale_log2
    if CAUSAL:
        s = tl.where(kpos[None, :] <= qpos[:, None], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(s - m_use[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _load_block_rows(v_ptr, bt_ptr, kb * B, kpos, k_len, page_size, s_vp, s_vt, v_head, d, PAGE_ALIGNED)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


# Per-request integers and the kept-block index (a slice at the TMA/tail split) are not specialised.
@triton.jit(
    do_not_specialize=["k_len", "q_offset", "first_qb", "n_qb", "s_ih", "s_iq", "s_ch"],
    do_not_specialize_on_alignment=["idx_ptr", "cnt_ptr"],
)
def _block_sparse_attn_kernel(
    q_ptr, k_ptr, v_ptr, bt_ptr, idx_ptr, cnt_ptr, o_ptr,
    k_len, q_offset, page_size, first_qb, n_qb, scale_log2,
    s_qt, s_qh, s_kp, s_kt, s_kh, s_vp, s_vt, s_vh, s_ot, s_oh, s_ih, s_iq, s_ch,
    GROUP: tl.constexpr, B: tl.constexpr, D: tl.constexpr, PAGE_ALIGNED: tl.constexpr,
):
    qb_local = n_qb - 1 - tl.program_id(0)  # longest rows first
    h = tl.program_id(1)
    qb = first_qb + qb_local
    d = tl.arange(0, D)
    qpos = qb * B + tl.arange(0, B)
    q_ok = (qpos >= q_offset) & (qpos < k_len)
    q_rows = (qpos - q_offset).to(tl.int64)
    q = tl.load(q_ptr + h.to(tl.int64) * s_qh + q_rows[:, None] * s_qt + d[None, :], mask=q_ok[:, None], other=0.0)
    kvh = (h // GROUP).to(tl.int64)
    m_i = tl.full((B,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((B,), dtype=tl.float32)
    acc = tl.zeros((B, D), dtype=tl.float32)
    row_idx, n, n_full = _kept_row(idx_ptr, cnt_ptr, h, qb_local, qb, s_ih, s_iq, s_ch)
    for i in range(n_full):
        kb = tl.load(row_idx + i)
        m_i, l_i, acc = _attend_block(
            q, kb, qpos, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, k_len, page_size,
            s_kp, s_kt, kvh * s_kh, s_vp, s_vt, kvh * s_vh, d, scale_log2, B, False, PAGE_ALIGNED,
        )
    for i in range(n_full, n):
        kb = tl.load(row_idx + i)
        m_i, l_i, acc = _attend_block(
            q, kb, qpos, m_i, l_i, acc, k_ptr, v_ptr, bt_ptr, k_len, page_size,
            s_kp, s_kt, kvh * s_kh, s_vp, s_vt, kvh * s_vh, d, scale_log2, B, True, PAGE_ALIGNED,
        )
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_ptrs = o_ptr + h.to(tl.int64) * s_oh + q_rows[:, None] * s_ot + d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=q_ok[:, None])


def block_sparse_attention_indexed(
    q: torch.Tensor,
    kv: PagedKV,
    idx: torch.Tensor,
    count: torch.Tensor,
    *,
    block_size: int,
    q_offset: int = 0,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    tiles: AttnTiles | None = None,
) -> torch.Tensor:
    """Attention of ``q: [Lq, Hq, D]`` (positions ``q_offset..k_len-1``) over the key blocks listed in
    ``idx: [Hq, n_qb, >=1]`` int32 (ascending, causal: none above the diagonal; first ``count: [Hq, n_qb]``
    entries valid), rows the absolute query blocks ``q_offset // B ..``. Writes ``out: [Lq, Hq, D]`` (q's
    dtype) and returns it. ``tiles``: kernel and launch shape (None: ``default_attn_tiles``)."""
    check_query(q, kv, q_offset)
    check_block_size(block_size)
    lq, hq, d = q.shape
    first_qb, n_qb, _ = block_grid(kv.k_len, q_offset, block_size)
    if idx.dim() != 3 or tuple(idx.shape[:2]) != (hq, n_qb) or idx.dtype != torch.int32:
        raise ValueError(f"idx must be [{hq}, {n_qb}, n] int32, got {tuple(idx.shape)} {idx.dtype}")
    if tuple(count.shape) != (hq, n_qb) or count.dtype != torch.int32:
        raise ValueError(f"count must be [{hq}, {n_qb}] int32, got {tuple(count.shape)} {count.dtype}")
    check_out(out, (lq, hq, d), q.dtype, q.device)
    if out is None:
        out = torch.empty_like(q)
    if out.stride(2) != 1:
        raise ValueError(f"out last dim must be contiguous, got strides {out.stride()}")
    scale_log2 = LOG2E * (scale if scale is not None else 1.0 / math.sqrt(d))
    tiles = tiles if tiles is not None else default_attn_tiles(q, kv, block_size)
    if tiles.kernel == "tma":
        # The warp-specialised TMA kernel has no garbage handling: a partly filled last key block (only
        # in the last query block's row) goes to the pointer kernel, one row of programs.
        n_tma = n_qb - 1 if tiles.warp_specialize and kv.k_len % block_size else n_qb
        if n_tma:
            _launch_tma(q, kv, idx, count, out, block_size, q_offset, first_qb, n_tma, scale_log2, tiles)
        if n_tma == n_qb:
            return out
        idx, count, first_qb, n_qb = idx[:, n_tma:], count[:, n_tma:], first_qb + n_tma, n_qb - n_tma
        tiles = POINTER_TILES
    kc, vc = kv.key_cache, kv.value_cache
    _block_sparse_attn_kernel[(n_qb, hq)](
        q, kc, vc, kv.block_table, idx, count, out,
        kv.k_len, q_offset, kv.page_size, first_qb, n_qb, scale_log2,
        q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2),
        vc.stride(0), vc.stride(1), vc.stride(2), out.stride(0), out.stride(1),
        idx.stride(0), idx.stride(1), count.stride(0),
        GROUP=hq // kv.num_kv_heads, B=block_size, D=d, PAGE_ALIGNED=kv.page_size % block_size == 0,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages if d <= 128 else 1,  # d 256: 2 stages > 227 KB smem
    )
    return out


def _launch_tma(
    q: torch.Tensor, kv: PagedKV, idx: torch.Tensor, count: torch.Tensor, out: torch.Tensor,
    block_size: int, q_offset: int, first_qb: int, n_qb: int, scale_log2: float, tiles: AttnTiles,
) -> None:
    from triton.tools.tensor_descriptor import TensorDescriptor

    bn = tiles.bn or block_size
    if block_size % bn:
        raise ValueError(f"AttnTiles.bn={bn} must divide the block size {block_size}")
    reason = tma_unsupported(q, kv, bn)
    if tiles.warp_specialize and not interpreting():
        reason = WS_HANGS
    if reason is not None:
        raise ValueError(f"AttnTiles(kernel='tma') cannot run here: {reason}; use the pointer kernel")
    hq, d = q.shape[1], q.shape[2]
    group = hq // kv.num_kv_heads
    k_desc, v_desc = (
        TensorDescriptor(c, list(c.shape), list(c.stride()), [1, bn, 1, d]) for c in (kv.key_cache, kv.value_cache)
    )
    q_desc = TensorDescriptor(q, [q.shape[0], hq * d], [q.stride(0), 1], [block_size, d])
    _block_sparse_attn_tma_kernel[(n_qb * group, kv.num_kv_heads)](
        q_desc, k_desc, v_desc, kv.block_table, idx, count, out,
        kv.k_len, q_offset, kv.page_size, first_qb, n_qb, scale_log2,
        out.stride(0), out.stride(1), idx.stride(0), idx.stride(1), count.stride(0),
        GROUP=group, B=block_size, D=d, BN=bn, WARP_SPECIALIZE=tiles.warp_specialize,
        QK_AHEAD=tiles.qk_ahead, num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
