"""Block-sparse prefill as paged dense attention: the kept key blocks of each (query head, query block)
become the page table of one short sequence, so an existing paged, varlen, causal kernel (vLLM's
FlashAttention 3) computes exactly XAttention's block-sparse attention at its own speed.

The construction, for one prefill row with queries at positions ``q_offset .. k_len - 1`` and kept key
blocks ``idx[h, qb, :count[h, qb]]`` (ascending; the diagonal block is always kept and is the last):

- every (head, query block) is a sequence of at most ``B`` queries: the queries of that block, with head
  ``h`` only (the queries are laid out head-major, ``[Hq * Lq, 1, D]``);
- its keys are its kept blocks in ascending order, read through a block table of vLLM pages; the cache is
  viewed with one KV head per "page" (:func:`head_pages`), so a table entry also picks the KV head;
- its key length is ``(count - 1) * B + diag_len``. FlashAttention aligns the causal mask to the bottom
  right (query ``i`` of ``m`` sees keys ``<= k_len - m + i``), which is the causal mask inside the diagonal
  block and no mask on the blocks before it: the block-sparse causal mask.

Pure torch, no host synchronisation; runs on any device (the CPU tests check it against
``attention_backend.reference``). The vLLM adapter (``attention_backend.vllm.fa3_sparse``) calls FA3 with it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SparsePages:
    """Arguments of one paged varlen causal attention call over ``N`` (row, head, query block) sequences.

    cu_seqlens_q: ``[N + 1]`` int32, offsets into the head-major queries; seqused_k: ``[N]`` int32;
    block_table: ``[N, width]`` int32 entries of the :func:`head_pages` view; max_seqlen_k: ``width`` pages
    of keys, an upper bound of ``seqused_k``. seqused_q: None when the sequences follow each other in the
    queries (sequence ``i`` is rows ``cu[i] .. cu[i + 1]``); built ``descending`` (each head's query blocks last
    first), ``[N]`` int32: sequence ``i`` is the ``seqused_q[i]`` rows from ``cu[i]`` (the last entry of ``cu``
    is the total), as FA3 takes them."""

    cu_seqlens_q: torch.Tensor
    seqused_k: torch.Tensor
    block_table: torch.Tensor
    max_seqlen_k: int
    seqused_q: torch.Tensor | None = None


def pages_unsupported(page_size: int, block_size: int) -> str | None:
    """Why a vLLM cache of ``page_size``-token pages cannot serve ``block_size`` blocks here (None if it can)."""
    if block_size % page_size:
        return f"vLLM's KV block size {page_size} does not divide the XAttention block {block_size}"
    return None


def head_pages(cache: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``cache [num_pages, page, Hkv, D]`` (vLLM's K or V view, any strides) as ``[N, page, 1, D]`` where
    entry ``page_id * ratio + kv_head`` is page ``page_id`` of KV head ``kv_head`` (no copy; entries may
    overlap in memory, which a reader does not mind). Returns ``(view, ratio)``.

    Needs the page stride to be a multiple of the head stride, true of both of vLLM's layouts
    (NHD: ratio = page * Hkv; HND: ratio = Hkv)."""
    pages, page, hkv, d = cache.shape
    sp, st, sh, sd = cache.stride()
    if sd != 1 or sh < 1 or sp % sh:
        raise ValueError(
            f"head_pages: expected a cache [pages, page, Hkv, D] with a contiguous last dim and a page stride "
            f"that is a multiple of the head stride, got strides {cache.stride()}"
        )
    ratio = sp // sh
    n = (pages - 1) * ratio + hkv
    return cache.as_strided((n, page, 1, d), (sh, st, sh, 1), cache.storage_offset()), ratio


def query_block_lens(q_len: int, k_len: int, block_size: int, device: torch.device | str) -> torch.Tensor:
    """Query rows in each query block of a row (``[n_qb]`` int64): the first block may start mid-block
    (chunked prefill, prefix hits), the last may end mid-block."""
    q_offset = k_len - q_len
    first = q_offset // block_size
    starts = torch.arange(first, -(-k_len // block_size), device=device) * block_size
    return (starts + block_size).clamp_max(k_len) - starts.clamp_min(q_offset)


def row_geometry(
    q_len: int, k_len: int, block_size: int, hq: int, device: torch.device | str, descending: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What a row's tables share whatever blocks are kept: (``cu_seqlens_q [Hq * n_qb + 1]`` int32, the key length
    of each query block's diagonal block ``[n_qb]`` int32 (ascending; the first block may start mid-block),
    ``seqused_q``). ``descending``: the sequences of each head are its query blocks last first, given by their
    start offsets (then the total) and ``seqused_q [Hq * n_qb]`` (:class:`SparsePages`); else ``seqused_q`` is None."""
    q_lens = query_block_lens(q_len, k_len, block_size, device)
    n_qb = q_lens.numel()
    diag = q_lens + ((k_len - q_len) % block_size) * (torch.arange(n_qb, device=device) == 0)
    cu = torch.zeros(hq * n_qb + 1, dtype=torch.int32, device=device)
    cu[1:] = q_lens.repeat(hq).cumsum(0)
    if not descending:
        return cu, diag.int(), None
    starts = cu[:-1].view(hq, n_qb).flip(1).reshape(-1)
    return torch.cat([starts, cu[-1:]]), diag.int(), q_lens.flip(0).repeat(hq).int()


cached_row_geometry = functools.lru_cache(maxsize=64)(row_geometry)
""":func:`row_geometry`, cached: the same for every layer of a step and every row of the same lengths. The tensors
are shared, so read-only for every caller (FlashAttention and :func:`concat_pages` only read them)."""


def row_layout(
    count: torch.Tensor, *, k_len: int, block_size: int, page_size: int, num_kv_heads: int, width: int | None
) -> tuple[int, int, int, int]:
    """``(Hq, n_qb, width, pages per block)`` of one row's tables, after checking what every builder needs
    (ValueError naming what is wrong); ``width`` defaults to all of the row's key blocks."""
    reason = pages_unsupported(page_size, block_size)
    if reason:
        raise ValueError(f"sparse_pages: {reason}")
    hq, n_qb = count.shape
    if hq % num_kv_heads:
        raise ValueError(f"sparse_pages: {hq} query heads are not a multiple of {num_kv_heads} KV heads")
    n_kb = -(-k_len // block_size)
    return hq, n_qb, n_kb if width is None else min(width, n_kb), block_size // page_size


def sparse_pages(
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
    """The sequences of ONE prefill row, in order head-major then query block (``descending``: each head's
    query blocks last first, ``SparsePages.seqused_q`` given).

    idx ``[Hq, n_qb, >= width]`` and count ``[Hq, n_qb]``: the kept key blocks as
    ``kernels.select_blocks_indexed`` returns them (entries past ``count`` are ignored; a count of 0 gives a
    sequence with no keys, which FlashAttention skips); page_table:
    the row's vLLM block table ``[max_pages]``; ``ratio``: from :func:`head_pages`. ``width`` bounds the
    kept blocks of any (head, query block) (default: all of the row's key blocks)."""
    hq, n_qb, width, per_block = row_layout(count, k_len=k_len, block_size=block_size, page_size=page_size,
                                            num_kv_heads=num_kv_heads, width=width)  # fmt: skip
    dev = count.device
    slot = torch.arange(width, device=dev)
    kb = torch.where(slot < count[..., None], idx[..., :width], 0).long()  # [Hq, n_qb, width]
    page_no = (kb[..., None] * per_block + torch.arange(per_block, device=dev)).clamp_max(page_table.numel() - 1)
    kv_head = (torch.arange(hq, device=dev) // (hq // num_kv_heads)).view(hq, 1, 1, 1)
    table = page_table.long()[page_no] * ratio + kv_head  # [Hq, n_qb, width, per_block]
    cu, diag_len, used_q = row_geometry(q_len, k_len, block_size, hq, dev, descending)
    seqused = ((count.long() - 1) * block_size + diag_len).clamp_min(0)  # count 0: no keys (nothing computed)
    if descending:
        table, seqused = table.flip(1), seqused.flip(1)
    return SparsePages(
        cu_seqlens_q=cu,
        seqused_k=seqused.reshape(-1).int(),
        block_table=table.reshape(hq * n_qb, width * per_block).int(),
        max_seqlen_k=width * block_size,
        seqused_q=used_q,
    )


def concat_pages(parts: list[SparsePages]) -> SparsePages:
    """The sequences of several rows in one call (their head-major queries concatenated in this order)."""
    if any(p.seqused_q is not None for p in parts):
        raise ValueError("concat_pages: tables built descending are for one call per head (fa3_sparse's per-head calls)")
    if len(parts) == 1:
        return parts[0]
    width = max(p.block_table.shape[1] for p in parts)
    cus, base = [], parts[0].cu_seqlens_q.new_zeros(())
    for p in parts:  # offsets stay on the device: each row's query count is its cu_seqlens_q[-1]
        cus.append(p.cu_seqlens_q[1:] + base)
        base = base + p.cu_seqlens_q[-1]
    tables = [torch.nn.functional.pad(p.block_table, (0, width - p.block_table.shape[1])) for p in parts]
    return SparsePages(
        cu_seqlens_q=torch.cat([parts[0].cu_seqlens_q[:1], *cus]),
        seqused_k=torch.cat([p.seqused_k for p in parts]),
        block_table=torch.cat(tables),
        max_seqlen_k=max(p.max_seqlen_k for p in parts),
    )


def head_major(q: torch.Tensor) -> torch.Tensor:
    """``[Lq, Hq, D]`` -> ``[Hq * Lq, 1, D]`` contiguous (one copy): the queries of the sequences above."""
    lq, hq, d = q.shape
    return q.transpose(0, 1).reshape(hq * lq, 1, d)
