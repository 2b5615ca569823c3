"""Block-sparse attention, Hopper variant: K/V tiles come by TMA (tensor descriptors) from the paged cache.

Same contract as ``sparse_attention._block_sparse_attn_kernel`` (one program per absolute query block and
query head, kept key blocks ascending, fp32 online softmax, causal token mask on the diagonal block only),
with three changes for sm_90:

- K and V tiles of ``BN`` key rows are loaded by TMA through 4-D descriptors over the cache view
  ``[pages, page_size, Hkv, D]`` (box ``[1, BN, 1, D]``): a tile must lie in one page, so the caller
  checks ``page_size % BN == 0`` (or that the whole context is in the first page);
- the coordinates of a step (kept block -> page through the block table) are two dependent scalar loads;
  with ``PREFETCH`` they are loaded one and two steps ahead (loop-carried), so their latency hides behind
  the previous step's MMAs instead of stalling every warp; ``WARP_SPECIALIZE`` asks Triton to split the
  loop into producer (loads) and consumer (MMA + softmax) warps instead; ``QK_AHEAD`` issues the next
  step's ``q k^T`` before this step's softmax (FA3's overlap of MMA and softmax, by hand);
- the grid puts the ``GROUP`` query heads of one KV head next to each other (program axis 0 is
  ``query block * GROUP + member``, longest rows first; axis 1 the KV head), so programs that run at the
  same time read the same K/V blocks (L2).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _step_token(row_idx, step, n_steps, B: tl.constexpr, BN: tl.constexpr, SUB: tl.constexpr):
    """First (logical) key token of loop step ``step``: kept block ``step // SUB``, sub-tile ``step % SUB``;
    0 past the last step (its loads then stay in bounds and the value is never used)."""
    kb = tl.load(row_idx + step // SUB, mask=step < n_steps, other=0)
    return kb * B + (step % SUB) * BN


@triton.jit
def _softmax_pv(s, v, m_i, l_i, acc, scale_log2):
    """The online-softmax update for the logits ``s = q k^T`` of one key tile without a token mask."""
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
    (FA3's intra-warpgroup overlap: the tensor cores run the next logits while the softmax runs); the
    block-table coordinates come one and two steps ahead as with ``PREFETCH``."""
    tok = _step_token(row_idx, 0, n_steps, B, BN, SUB)
    page_v = tl.load(bt_ptr + tok // page_size)
    row_v = tok % page_size
    s = tl.dot(q, k_desc.load([page_v, row_v, kvh, 0]).reshape(BN, D).T)
    tok_c = _step_token(row_idx, 1, n_steps, B, BN, SUB)
    page_c = tl.load(bt_ptr + tok_c // page_size, mask=n_steps > 1, other=0)
    tok_n = _step_token(row_idx, 2, n_steps, B, BN, SUB)
    for i in tl.range(0, n_steps - 1):
        page, row = page_c, tok_c % page_size  # step i + 1
        page_c = tl.load(bt_ptr + tok_n // page_size, mask=i + 2 < n_steps, other=0)
        tok_c = tok_n
        tok_n = _step_token(row_idx, i + 3, n_steps, B, BN, SUB)
        s_next = tl.dot(q, k_desc.load([page, row, kvh, 0]).reshape(BN, D).T)
        v = v_desc.load([page_v, row_v, kvh, 0]).reshape(BN, D)
        m_i, l_i, acc = _softmax_pv(s, v, m_i, l_i, acc, scale_log2)
        s = s_next
        page_v, row_v = page, row
    v = v_desc.load([page_v, row_v, kvh, 0]).reshape(BN, D)
    return _softmax_pv(s, v, m_i, l_i, acc, scale_log2)


# Lengths and offsets change with every request: no recompile per divisibility pattern of these.
@triton.jit(do_not_specialize=["k_len", "q_offset", "first_qb", "n_qb"])
def _block_sparse_attn_tma_kernel(
    q_ptr, k_desc, v_desc, bt_ptr, idx_ptr, cnt_ptr, o_ptr,
    k_len, q_offset, page_size, first_qb, n_qb, scale_log2,
    s_qt, s_qh, s_ot, s_oh, s_ih, s_iq, s_ch,
    GROUP: tl.constexpr, B: tl.constexpr, D: tl.constexpr, BN: tl.constexpr,
    PREFETCH: tl.constexpr, WARP_SPECIALIZE: tl.constexpr, QK_AHEAD: tl.constexpr,
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
    q = tl.load(q_ptr + h.to(tl.int64) * s_qh + q_rows[:, None] * s_qt + d[None, :], mask=q_ok[:, None], other=0.0)
    m_i = tl.full((B,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((B,), dtype=tl.float32)
    acc = tl.zeros((B, D), dtype=tl.float32)
    row_idx = idx_ptr + h.to(tl.int64) * s_ih + qb_local.to(tl.int64) * s_iq
    n = tl.load(cnt_ptr + h.to(tl.int64) * s_ch + qb_local)
    # Kept blocks are causal and ascending: all but possibly the last (the diagonal) need no token mask,
    # and none of them reaches k_len, so their tiles hold no garbage rows of a partly filled page.
    last = tl.load(row_idx + tl.maximum(n - 1, 0))
    n_full = tl.where(n > 0, n - (last >= qb).to(tl.int32), 0)
    n_steps = n_full * SUB
    if QK_AHEAD:
        if n_steps > 0:
            m_i, l_i, acc = _qk_ahead_loop(
                q, k_desc, v_desc, bt_ptr, row_idx, n_steps, page_size, kvh, m_i, l_i, acc, scale_log2, B, D, BN, SUB
            )
    else:
        if PREFETCH:
            tok_c = _step_token(row_idx, 0, n_steps, B, BN, SUB)
            page_c = tl.load(bt_ptr + tok_c // page_size, mask=n_steps > 0, other=0)
            tok_n = _step_token(row_idx, 1, n_steps, B, BN, SUB)
        for i in tl.range(0, n_steps, warp_specialize=WARP_SPECIALIZE):
            if PREFETCH:
                page, row = page_c, tok_c % page_size
                page_c = tl.load(bt_ptr + tok_n // page_size, mask=i + 1 < n_steps, other=0)
                tok_c = tok_n
                tok_n = _step_token(row_idx, i + 2, n_steps, B, BN, SUB)
            else:
                tok = _step_token(row_idx, i, n_steps, B, BN, SUB)
                page, row = tl.load(bt_ptr + tok // page_size), tok % page_size
            k = k_desc.load([page, row, kvh, 0]).reshape(BN, D)
            v = v_desc.load([page, row, kvh, 0]).reshape(BN, D)
            m_i, l_i, acc = _softmax_pv(tl.dot(q, k.T), v, m_i, l_i, acc, scale_log2)
    if n_full < n:  # the diagonal block: causal token mask; rows past k_len of a page may be garbage
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
