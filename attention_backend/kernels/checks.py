"""Input validation shared by the kernel wrappers: every check raises ValueError saying expected vs got,
before any launch."""

from __future__ import annotations

import os

import torch

from attention_backend.config import KERNEL_BLOCK_SIZES, KERNEL_HEAD_DIMS, kernel_strides
from attention_backend.kernels.kv_view import PagedKV

KERNEL_DTYPES = (torch.float16, torch.bfloat16)
__all__ = ["KERNEL_BLOCK_SIZES", "KERNEL_DTYPES", "KERNEL_HEAD_DIMS"]


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1``: Triton runs the kernels on CPU tensors (tests on tiny shapes)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_query(q: torch.Tensor, kv: PagedKV, q_offset: int) -> None:
    """``q: [Lq, Hq, D]`` on CUDA in fp16/bf16, the last ``Lq`` positions of ``kv.k_len`` tokens."""
    if q.dim() != 3:
        raise ValueError(f"q must be [Lq, Hq, D], got shape {tuple(q.shape)}")
    if not q.is_cuda and not interpreting():
        raise ValueError(f"the Triton kernels need CUDA tensors, got q on {q.device}")
    if q.dtype not in KERNEL_DTYPES:
        raise ValueError(f"q dtype must be one of {KERNEL_DTYPES}, got {q.dtype}")
    lq, hq, d = q.shape
    if d not in KERNEL_HEAD_DIMS:
        raise ValueError(f"head dim must be one of {KERNEL_HEAD_DIMS}, got {d}")
    for name, t in (("key_cache", kv.key_cache), ("value_cache", kv.value_cache)):
        if t.dim() != 4 or t.shape[2:] != kv.key_cache.shape[2:] or t.shape[3] != d:
            raise ValueError(f"{name} must be [pages, page_size, Hkv, {d}], got {tuple(t.shape)}")
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{name} must be {q.dtype} on {q.device}, got {t.dtype} on {t.device}")
        if t.stride(3) != 1:
            raise ValueError(f"{name} last dim must be contiguous, got strides {t.stride()}")
    if q.stride(2) != 1:
        raise ValueError(f"q last dim must be contiguous, got strides {q.stride()}")
    if hq % kv.num_kv_heads != 0:
        raise ValueError(f"Hq must be a multiple of Hkv, got Hq={hq}, Hkv={kv.num_kv_heads}")
    if q_offset < 0 or q_offset + lq != kv.k_len:
        raise ValueError(
            f"queries must be the last Lq of k_len tokens: expected q_offset + Lq == k_len, "
            f"got q_offset={q_offset}, Lq={lq}, k_len={kv.k_len}"
        )
    if lq < 1:
        raise ValueError(f"Lq must be >= 1, got {lq}")
    pages_needed = -(-kv.k_len // kv.page_size)
    if kv.block_table.dim() != 1 or kv.block_table.numel() < pages_needed:
        raise ValueError(
            f"block_table must be 1-D with >= {pages_needed} pages, got shape {tuple(kv.block_table.shape)}"
        )
    if kv.block_table.dtype != torch.int32 or kv.block_table.device != q.device:
        raise ValueError(
            f"block_table must be int32 on {q.device}, got {kv.block_table.dtype} on {kv.block_table.device}"
        )


def check_block_size(block_size: int, stride: int | None = None) -> None:
    if block_size not in KERNEL_BLOCK_SIZES:
        raise ValueError(f"kernel block_size must be one of {KERNEL_BLOCK_SIZES}, got {block_size}")
    if stride is not None and stride not in kernel_strides(block_size):
        raise ValueError(
            f"kernel stride must split block_size={block_size} into a power of two >= 4 of rows, got {stride}"
        )


def block_grid(k_len: int, q_offset: int, block_size: int) -> tuple[int, int, int]:
    """(first query block, number of query blocks, number of key blocks) in absolute block positions."""
    n_kb = -(-k_len // block_size)
    first_qb = q_offset // block_size
    return first_qb, n_kb - first_qb, n_kb


def check_out(out: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
    if out is None:
        return
    if tuple(out.shape) != shape or out.dtype != dtype or out.device != device:
        raise ValueError(
            f"out must be {shape} {dtype} on {device}, got {tuple(out.shape)} {out.dtype} on {out.device}"
        )
