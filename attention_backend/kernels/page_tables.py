"""``block_pages.sparse_pages`` in one Triton launch: the per-block page tables of the ``fa3`` sparse kernel.

The torch construction (``attention_backend.block_pages``) is about 35 small tensor ops per row and layer;
on an H100 they cost 0.6-1.1 ms of host time per layer (``bench/xattn_layer_cost.py``: ``sparse_fa3``), as
much as the sparse attention itself at 32K, so the GPU waited for the host. Here the parts that depend on
the layer (the kept blocks) are one launch, and the parts that depend only on the row's geometry
(``cu_seqlens_q``, each query block's diagonal length) are built once per geometry and cached. Same output
as ``sparse_pages``, entry for entry (the CPU tests run both under ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attention_backend.block_pages import SparsePages, cached_row_geometry, row_layout


# Nothing per request is specialised (lengths, strides, and the block-table row's alignment): one compile per
# model shape and page size, done at start-up by ``kernels.warmup.precompile``.
@triton.jit(
    do_not_specialize=["n_qb", "width", "max_pages", "ratio", "s_ih", "s_iq", "s_ch", "s_t"],
    do_not_specialize_on_alignment=["idx_ptr", "cnt_ptr", "pt_ptr", "diag_ptr", "table_ptr", "used_ptr"],
)
def _sparse_pages_kernel(
    idx_ptr, cnt_ptr, pt_ptr, diag_ptr, table_ptr, used_ptr,
    n_qb, width, max_pages, ratio, s_ih, s_iq, s_ch, s_t,
    GROUP: tl.constexpr, B: tl.constexpr, PER_BLOCK: tl.constexpr, BLOCK_J: tl.constexpr, DESC: tl.constexpr,
):
    pid = tl.program_id(0)  # one (query head, query block) sequence
    h = pid // n_qb
    qb = pid % n_qb
    n = tl.load(cnt_ptr + h.to(tl.int64) * s_ch + qb)
    diag = tl.load(diag_ptr + qb)
    if DESC:  # the head's query blocks last first: this block's sequence is the head's (n_qb - 1 - qb)-th
        pid = h * n_qb + (n_qb - 1 - qb)
    tl.store(used_ptr + pid, tl.maximum((n - 1) * B + diag, 0))
    kv_head = h // GROUP
    p = tl.arange(0, PER_BLOCK)
    row_idx = idx_ptr + h.to(tl.int64) * s_ih + qb.to(tl.int64) * s_iq
    row_out = table_ptr + pid.to(tl.int64) * s_t
    for j0 in range(0, width, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)
        kb = tl.load(row_idx + j, mask=j < n, other=0)  # slots past the count read block 0, as sparse_pages does
        page_no = tl.minimum(kb[:, None] * PER_BLOCK + p[None, :], max_pages - 1)
        page = tl.load(pt_ptr + page_no, mask=(j < width)[:, None], other=0)
        tl.store(row_out + j[:, None] * PER_BLOCK + p[None, :], page * ratio + kv_head, mask=(j < width)[:, None])


def fused_supported(block_size: int, page_size: int) -> bool:
    """Pages that divide the block in a power-of-two count (every vLLM page size does): the kernel's case."""
    per_block = block_size // page_size if page_size and block_size % page_size == 0 else 0
    return per_block > 0 and per_block & (per_block - 1) == 0


def sparse_pages_fused(
    idx: torch.Tensor,
    count: torch.Tensor,
    page_table: torch.Tensor,
    *,
    q_len: int,
    k_len: int,
    block_size: int,
    page_size: int,
    ratio: int,
    num_kv_heads: int,
    width: int | None = None,
    descending: bool = False,
) -> SparsePages:
    """``block_pages.sparse_pages`` (same arguments and result) with the table and key lengths in one launch
    (``descending``: written in that order by the same launch, no copy)."""
    hq, n_qb, width, per_block = row_layout(count, k_len=k_len, block_size=block_size, page_size=page_size,
                                            num_kv_heads=num_kv_heads, width=width)  # fmt: skip
    if not fused_supported(block_size, page_size):
        raise ValueError(f"sparse_pages_fused: {per_block} pages per block is not a power of two")
    if count.dtype != torch.int32 or idx.dtype != torch.int32 or idx.stride(-1) != 1 or count.stride(-1) != 1:
        raise ValueError(
            f"sparse_pages_fused: expected int32 idx and count with a contiguous last dim, got {idx.dtype} "
            f"{tuple(idx.stride())} and {count.dtype} {tuple(count.stride())}"
        )
    cu, diag, used_q = cached_row_geometry(q_len, k_len, block_size, hq, count.device, descending)
    if diag.numel() != n_qb:
        raise ValueError(f"sparse_pages: count has {n_qb} query blocks, the row has {diag.numel()}")
    table = torch.empty((hq * n_qb, width * per_block), dtype=torch.int32, device=count.device)
    used = torch.empty(hq * n_qb, dtype=torch.int32, device=count.device)
    pt = page_table if page_table.dtype == torch.int32 and page_table.stride(0) == 1 else page_table.int().contiguous()
    _sparse_pages_kernel[(hq * n_qb,)](
        idx, count, pt, diag, table, used,
        n_qb, width, pt.numel(), ratio, idx.stride(0), idx.stride(1), count.stride(0), table.stride(0),
        GROUP=hq // num_kv_heads, B=block_size, PER_BLOCK=per_block, BLOCK_J=128, DESC=descending,
    )  # fmt: skip
    return SparsePages(cu_seqlens_q=cu, seqused_k=used, block_table=table, max_seqlen_k=width * block_size,
                       seqused_q=used_q)
