"""A torch model of FlashAttention's paged varlen causal call, a vLLM-layout paged cache and random block
selections: shared by the block-page tests (``test_block_pages.py``, ``vllm/test_fa3_sparse_cpu.py``)."""

from __future__ import annotations

import torch

from attention_backend.block_pages import SparsePages


def paged_varlen_causal(
    q: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor, sp: SparsePages, scale: float | None = None,
    seqused_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """What ``flash_attn_varlen_func(q, k_pages, v_pages, cu_seqlens_q, seqused_k, block_table, causal=True)``
    computes (its documented semantics), in fp64 with plain loops; with ``seqused_q`` (FA3's op), sequence ``i``'s
    queries are the ``seqused_q[i]`` rows from ``cu_seqlens_q[i]``. Rows no sequence covers stay NaN."""
    out = torch.full(q.shape, float("nan"), dtype=torch.float64)
    cu, used = sp.cu_seqlens_q.tolist(), sp.seqused_k.tolist()
    page = k_pages.shape[1]
    assert sp.max_seqlen_k >= max(used)
    for i in range(len(used)):
        m, n = (cu[i + 1] - cu[i]) if seqused_q is None else int(seqused_q[i]), used[i]
        if m == 0:
            continue
        pages = sp.block_table[i, : -(-n // page)].long()
        keys = k_pages[pages].reshape(-1, k_pages.shape[-1])[:n].double()
        values = v_pages[pages].reshape(-1, v_pages.shape[-1])[:n].double()
        qi = q[cu[i] : cu[i] + m, 0].double()
        logits = qi @ keys.T * (qi.shape[-1] ** -0.5 if scale is None else scale)
        visible = torch.arange(n)[None, :] <= (n - m + torch.arange(m))[:, None]
        out[cu[i] : cu[i] + m, 0] = torch.softmax(logits.masked_fill(~visible, float("-inf")), -1) @ values
    return out


def vllm_cache(k: torch.Tensor, v: torch.Tensor, page: int, layout: str, seed: int):
    """k, v [Lk, Hkv, D] scattered into a vLLM FLASH_ATTN cache (logical [pages, Hkv, page, 2D], memory in
    ``layout``) over shuffled pages; returns the K and V views [pages, page, Hkv, D] and the block table."""
    lk, hkv, d = k.shape
    n_used = -(-lk // page)
    n_pages = n_used + 3
    if layout == "NHD":
        cache = torch.zeros(n_pages, page, hkv, 2 * d, dtype=k.dtype).permute(0, 2, 1, 3)
    else:
        cache = torch.zeros(n_pages, hkv, page, 2 * d, dtype=k.dtype)
    table = torch.randperm(n_pages, generator=torch.Generator().manual_seed(seed))[:n_used].int()
    key_cache, value_cache = cache.transpose(1, 2).split(d, dim=-1)
    for t in range(lk):
        key_cache[table[t // page], t % page] = k[t]
        value_cache[table[t // page], t % page] = v[t]
    return key_cache, value_cache, table


def random_selection(hq: int, q_len: int, k_len: int, block: int, keep: float, seed: int):
    """A random causal block mask (sink and diagonal kept) and its ascending idx / count."""
    first, n_kb = (k_len - q_len) // block, -(-k_len // block)
    qb = torch.arange(first, n_kb)[:, None]
    kb = torch.arange(n_kb)[None, :]
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(hq, qb.shape[0], n_kb, generator=g) < keep) & (kb <= qb)
    mask |= (kb == 0) | (kb == qb)
    count = mask.sum(-1).int()
    idx = torch.full((hq, qb.shape[0], n_kb), -7, dtype=torch.int32)  # garbage past count, as in the kernel
    for h in range(hq):
        for i in range(qb.shape[0]):
            kept = torch.nonzero(mask[h, i]).flatten()
            idx[h, i, : kept.numel()] = kept.int()
    return mask, idx, count
