"""Input validation shared by the public functions: ValueError saying expected vs got, before any work."""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_qkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None, *, check_finite: bool = True
) -> tuple[int, int, int, int, int]:
    """Validate ``q: [Lq, Hq, D]``, ``k, v: [Lk, Hkv, D]``; return (Lq, Lk, Hq, Hkv, D). ``check_finite``: also
    refuse NaN / inf in q and k (off CUDA; one pass over each); False where the caller checked already, or where
    one request's bad activations must not stop a server (the vLLM CPU adapter: its output is then NaN, as
    dense attention's would be)."""
    named = [("q", q), ("k", k)] + ([("v", v)] if v is not None else [])
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(f"{name}: expected 3 dims [L, H, D], got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name}: expected a floating dtype {FLOAT_DTYPES}, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name}: expected device {q.device} (the device of q), got {t.device}")
        if t.dtype != q.dtype:
            raise ValueError(f"{name}: expected dtype {q.dtype} (the dtype of q), got {t.dtype}")
    lq, hq, d = q.shape
    lk, hkv, dk = k.shape
    if lq < 1 or lk < 1:
        raise ValueError(f"q, k: expected at least one token each, got Lq={lq}, Lk={lk}")
    if d < 1:
        raise ValueError(f"q: expected a head dim >= 1, got shape {tuple(q.shape)}")
    if dk != d:
        raise ValueError(f"k: expected head dim {d} (that of q), got {dk}")
    if hq < 1 or hkv < 1 or hq % hkv:
        raise ValueError(f"heads: expected Hq a multiple of Hkv (both >= 1), got Hq={hq}, Hkv={hkv}")
    if v is not None and tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    for name, t in (("q", q), ("k", k)):
        # NaN / inf would spoil every block score of the head and come out as NaN attention. The torch path
        # only: on CUDA this check would cost a host sync per call (the kernels' callers own their inputs).
        if check_finite and not t.is_cuda and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: expected finite values, got {_non_finite(t)}")
    return lq, lk, hq, hkv, d


def _non_finite(t: torch.Tensor) -> str:
    bad = ~torch.isfinite(t)
    first = tuple(int(i) for i in torch.nonzero(bad)[0])
    return f"{int(bad.sum())} NaN/inf values (first at index {first}: {float(t[first])})"


def resolve_q_offset(q_offset: int | None, lq: int, lk: int) -> int:
    """Absolute position of ``q[0]``; None means the queries are the last ``lq`` of the ``lk`` tokens."""
    if lq > lk:
        raise ValueError(
            f"q, k: expected Lq <= Lk (q_offset in [0, Lk - Lq]: the queries are among the keys), got Lq={lq}, Lk={lk}"
        )
    if q_offset is None:
        q_offset = lk - lq
    if isinstance(q_offset, bool) or not isinstance(q_offset, int) or not 0 <= q_offset <= lk - lq:
        raise ValueError(f"q_offset: expected an int in [0, Lk - Lq] = [0, {lk - lq}], got {q_offset!r}")
    return q_offset


def check_block_geometry(block_size: int, stride: int | None = None) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: expected a positive int, got {block_size!r}")
    if stride is not None and (
        isinstance(stride, bool) or not isinstance(stride, int) or stride < 1 or block_size % stride
    ):
        raise ValueError(f"stride: expected a positive divisor of block_size={block_size}, got {stride!r}")


def query_blocks(q_offset: int, lq: int, block_size: int) -> tuple[int, int]:
    """(first absolute query block, number of query blocks) touched by positions [q_offset, q_offset+lq)."""
    first = q_offset // block_size
    last = (q_offset + lq - 1) // block_size
    return first, last - first + 1


def check_block_mask(mask: torch.Tensor, hq: int, nqb: int, nkb: int, device: torch.device) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"block_mask: expected a bool tensor, got {got}")
    if tuple(mask.shape) != (hq, nqb, nkb):
        raise ValueError(f"block_mask: expected shape [Hq, nqb, nkb] = {(hq, nqb, nkb)}, got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"block_mask: expected device {device}, got {mask.device}")


def default_scale(d: int, scale: float | None) -> float:
    if scale is None:
        return d**-0.5
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not 0 < scale < math.inf:
        raise ValueError(f"scale: expected a positive finite float, got {scale!r}")
    return float(scale)
