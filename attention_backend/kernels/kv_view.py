"""How the kernels see keys and values: always as pages addressed through a block table.

vLLM's CUDA backends keep the KV cache as ``[num_pages, page_size, Hkv, D]`` per K and V, and a
sequence's token ``p`` lives in page ``block_table[p // page_size]`` at row ``p % page_size``. A
contiguous ``k: [Lk, Hkv, D]`` is the special case of one page of ``Lk`` rows, so every kernel has one
addressing path and the tests of the contiguous path also exercise the paged one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PagedKV:
    """Keys and values of ONE sequence, read through its block table.

    key_cache, value_cache: ``[num_pages, page_size, Hkv, D]`` (any strides, last dim contiguous).
    block_table: ``[max_pages]`` int32 on the same device; entry ``i`` is the page holding tokens
    ``[i * page_size, (i + 1) * page_size)``.
    k_len: number of valid context tokens (the sequence's full length, cached tokens included).
    """

    key_cache: torch.Tensor
    value_cache: torch.Tensor
    block_table: torch.Tensor
    k_len: int

    @property
    def page_size(self) -> int:
        return int(self.key_cache.shape[1])

    @property
    def num_kv_heads(self) -> int:
        return int(self.key_cache.shape[2])

    @property
    def head_dim(self) -> int:
        return int(self.key_cache.shape[3])

    @staticmethod
    def from_contiguous(k: torch.Tensor, v: torch.Tensor) -> PagedKV:
        """View ``k, v: [Lk, Hkv, D]`` as one page of ``Lk`` rows (no copy)."""
        table = torch.zeros(1, dtype=torch.int32, device=k.device)
        return PagedKV(k.unsqueeze(0), v.unsqueeze(0), table, int(k.shape[0]))
