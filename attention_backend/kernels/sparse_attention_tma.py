"""Block-sparse attention, Hopper variant: K/V tiles come by TMA (tensor descriptors) from the paged cache.

Same contract as ``sparse_attention._block_sparse_attn_kernel`` (one program per absolute query block and
query head, kept key blocks ascending, fp32 online softmax, causal token mask on the diagonal block only),
with these changes for sm_90:

- K and V tiles of ``BN`` key rows are loaded by TMA through 4-D descriptors over the cache view
  ``[pages, page_size, Hkv, D]`` (box ``[1, BN, 1, D]``): a tile must lie in one page, so the caller
  checks ``page_size % BN == 0`` (or that the whole context is in the first page); q comes by TMA too,
  through a 2-D view ``[Lq, Hq * D]``, and stays in shared memory for the MMAs (the pointer kernel holds it
  in registers and spills: 255 registers and ~2.8 KB of spill traffic per thread against 194 and none,
  ``bench/xattn_sparse_aot.py``);
- the coordinates of a step (kept block -> page through the block table) are two dependent scalar loads
  computed from the loop index alone, which Triton's pipeliner schedules stages ahead (the kept-block index
  two steps ahead, the page by cp.async one step ahead, then the TMA copy); ``WARP_SPECIALIZE`` asks
  Triton to split the loop into a producer and two 64-row consumer warpgroups (FA3's layout; 12 warps at
  ``num_warps`` 4): Triton 3.6 does that only for one loop over every kept block with the token mask on
  every step (see the loop) and a 2-D q box, and the caller sends a partly filled last key block to the
  pointer kernel; ``QK_AHEAD`` issues the next step's ``q k^T`` before this step's
  softmax (FA3's overlap of MMA and softmax, by hand);
- the grid puts the ``GROUP`` query heads of one KV head next to each other (program axis 0 is
  ``query block * GROUP + member``, longest rows first; axis 1 the KV head), so programs that run at the
  same time read the same K/V blocks (L2).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _kept_row(idx_ptr, cnt_ptr, h, qb_local, qb, s_ih, s_iq, s_ch):
    """The kept key blocks of query head ``h``, query block ``qb`` (row ``qb_local`` of ``idx``/``count``):
    (pointer to the row, its count n, n_full = how many come before the diagonal). Kept blocks are causal
    and ascending: all but possibly the last (the diagonal) need no token mask, and none of them reaches
    k_len (so their tiles hold no garbage rows of a partly filled page). Shared by both sparse kernels."""
    row_idx = idx_ptr + h.to(tl.int64) * s_ih + qb_local.to(tl.int64) * s_iq
    n = tl.load(cnt_ptr + h.to(tl.int64) * s_ch + qb_local)
    last = tl.load(row_idx + tl.maximum(n - 1, 0))
    return row_idx, n, tl.where(n > 0, n - (last >= qb).to(tl.int32), 0)


@triton.jit
def _step_coords(bt_ptr, row_idx, step, n_steps, page_size, B: tl.constexpr, BN: tl.constexpr, SUB: tl.constexpr):
    """(page, row in page, token) of the first key of loop step ``step`` (kept block ``step // SUB``, sub-tile
    ``step % SUB``); page 0 past the last step, so every load stays in bounds. Loaded from the loop index
    alone: Triton's pipeliner then issues these scalar loads and the TMA copies stages ahead of the MMAs
    (coordinates carried between iterations would stop it pipelining)."""
    ok = step < n_steps
    tok = tl.load(row_idx + step // SUB, mask=ok, other=0) * B + (step % SUB) * BN
    return tl.load(bt_ptr + tok // page_size, mask=ok, other=0), tok % page_size, tok


@triton.jit
def _softmax_pv(s, v, m_i, l_i, acc, scale_log2):
    """The online-softmax update for the logits ``s = q k^T`` of one key tile (masked entries -inf; no row
    may be all -inf before its first key, which holds for ascending kept blocks)."""
    m_new = tl.maximum(m_i, tl.max(s, 1) * scale_log2)
    p = tl.exp2(s * scale_log2 - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_new, l_i, acc


@triton.jit
def _qk_ahead_loop(q, k_desc, v_desc, bt_ptr, row_idx, n_steps, page_size, kvh, m_i, l_i, acc, scale_log2,
                   B: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, SUB: tl.constexpr):
    """The unmasked steps (``n_steps >= 1``) with ``q k^T`` of step i+1 issued before the softmax of step i
    (FA3's intra-warpgroup overlap, by hand: the tensor cores can run the next logits during the softmax)."""
    page, row, _ = _step_coords(bt_ptr, row_idx, 0, n_steps, page_size, B, BN, SUB)
    s = tl.dot(q, k_desc.load([page, row, kvh, 0]).reshape(BN, D).T)
    for i in tl.range(0, n_steps - 1):
        page, row, _ = _step_coords(bt_ptr, row_idx, i + 1, n_steps, page_size, B, BN, SUB)
        s_next = tl.dot(q, k_desc.load([page, row, kvh, 0]).reshape(BN, D).T)
        page, row, _ = _step_coords(bt_ptr, row_idx, i, n_steps, page_size, B, BN, SUB)  # L1 hits
        v = v_desc.load([page, row, kvh, 0]).reshape(BN, D)
        m_i, l_i, acc = _softmax_pv(s, v, m_i, l_i, acc, scale_log2)
        s = s_next
    page, row, _ = _step_coords(bt_ptr, row_idx, n_steps - 1, n_steps, page_size, B, BN, SUB)
    v = v_desc.load([page, row, kvh, 0]).reshape(BN, D)
    return _softmax_pv(s, v, m_i, l_i, acc, scale_log2)


# Lengths, offsets and the kept-block index's strides change with every request: no recompile per
# divisibility pattern of these.
@triton.jit(do_not_specialize=["k_len", "q_offset", "first_qb", "n_qb", "s_ih", "s_iq", "s_ch"])
def _block_sparse_attn_tma_kernel(
    q_desc, k_desc, v_desc, bt_ptr, idx_ptr, cnt_ptr, o_ptr,
    k_len, q_offset, page_size, first_qb, n_qb, scale_log2,
    s_ot, s_oh, s_ih, s_iq, s_ch,
    GROUP: tl.constexpr, B: tl.constexpr, D: tl.constexpr, BN: tl.constexpr,
    WARP_SPECIALIZE: tl.constexpr, QK_AHEAD: tl.constexpr,
):
    SUB: tl.constexpr = B // BN
    pid = tl.program_id(0)
    qb_local = n_qb - 1 - pid // GROUP  # longest rows first
    kvh = tl.program_id(1)
    h = kvh * GROUP + pid % GROUP
    qb = first_qb + qb_local
    d = tl.arange(0, D)
    qpos = qb * B + tl.arange(0, B)
    q_ok = (qpos >= q_offset) & (qpos < k_len)
    q_rows = (qpos - q_offset).to(tl.int64)
    # q by TMA (stays in shared memory for the MMAs: no registers spilt, and Triton's Hopper warp
    # specialisation fails on a pointer-loaded q); rows before q_offset (a chunk not starting on a block)
    # sit at negative coordinates and rows past k_len beyond the tensor: both zero-filled.
    q = q_desc.load([qb * B - q_offset, h * D])  # q viewed as [Lq, Hq * D]: a 2-D box keeps the warp split
    m_i = tl.full((B,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((B,), dtype=tl.float32)
    acc = tl.zeros((B, D), dtype=tl.float32)
    row_idx, n, n_full = _kept_row(idx_ptr, cnt_ptr, h, qb_local, qb, s_ih, s_iq, s_ch)
    n_steps = n_full * SUB
    if WARP_SPECIALIZE:
        # One loop over every kept block, the diagonal included (token mask on every step): Triton 3.6
        # specialises the warps only when no second MMA follows a loop whose bound was loaded. The caller
        # leaves a partly filled last key block (k_len % B != 0, garbage past k_len) to the pointer kernel.
        for i in tl.range(0, n * SUB, warp_specialize=True):
            page, row, tok = _step_coords(bt_ptr, row_idx, i, n * SUB, page_size, B, BN, SUB)
            k = k_desc.load([page, row, kvh, 0]).reshape(BN, D)
            v = v_desc.load([page, row, kvh, 0]).reshape(BN, D)
            kpos = tok + tl.arange(0, BN)
            s = tl.where(kpos[None, :] <= qpos[:, None], tl.dot(q, k.T), float("-inf"))
            m_i, l_i, acc = _softmax_pv(s, v, m_i, l_i, acc, scale_log2)
    elif QK_AHEAD:
        if n_steps > 0:
            m_i, l_i, acc = _qk_ahead_loop(
                q, k_desc, v_desc, bt_ptr, row_idx, n_steps, page_size, kvh, m_i, l_i, acc, scale_log2, B, D, BN, SUB
            )
    else:
        for i in tl.range(0, n_steps):
            page, row, _ = _step_coords(bt_ptr, row_idx, i, n_steps, page_size, B, BN, SUB)
            k = k_desc.load([page, row, kvh, 0]).reshape(BN, D)
            v = v_desc.load([page, row, kvh, 0]).reshape(BN, D)
            m_i, l_i, acc = _softmax_pv(tl.dot(q, k.T), v, m_i, l_i, acc, scale_log2)
    if n_full < n and not WARP_SPECIALIZE:  # the diagonal block: causal token mask; rows past k_len of a page may be garbage
        for j in tl.static_range(SUB):
            tok = qb * B + j * BN
            if tok < k_len:
                kpos = tok + tl.arange(0, BN)
                page = tl.load(bt_ptr + tok // page_size)
                k = k_desc.load([page, tok % page_size, kvh, 0]).reshape(BN, D)
                v = v_desc.load([page, tok % page_size, kvh, 0]).reshape(BN, D)
                v = tl.where((kpos < k_len)[:, None], v, 0.0)
                s = tl.where(kpos[None, :] <= qpos[:, None], tl.dot(q, k.T) * scale_log2, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: sub-tile 0 gives every row its first key
                p = tl.exp2(s - m_new[:, None])
                alpha = tl.exp2(m_i - m_new)
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
                m_i = m_new
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_ptrs = o_ptr + h.to(tl.int64) * s_oh + q_rows[:, None] * s_ot + d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=q_ok[:, None])
