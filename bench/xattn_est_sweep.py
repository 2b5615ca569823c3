"""Where the estimation step's time goes, on one GPU: launch shapes, kernel structure, and ceilings.

For each length and stride S (32 query heads, 8 KV heads, head dim 128, bf16, planted inputs of
``xattn_speed.planted_qkv``), times:
- ``estimate_block_scores`` with the pointer-load ("flat") and the TMA kernel (both one pipelined loop
  over key tile x offset x head-dim slice) at several launch shapes (the first two session-3 runs also
  timed a nested kernel, a key-tile loop around an offset loop, removed since: xattn_speed.md);
- the same GEMM without the softmax epilogue (``_gemm_rowmax_kernel`` / ``_gemm_rowmax_tma_kernel`` below:
  identical loads and MMAs, the epilogue replaced by a row max per key tile), to separate the epilogue from the
  loads + MMAs;
- cuBLAS on the same GEMM laid out contiguously (reshaped queries x reshaped keys, all tiles, bf16 out):
  what this card's best GEMM does with the work, as the ceiling (its causal half = half the time);
- the library-GEMM estimate (``EstimateTiles(gemm=True)``, ``kernels.estimate_gemm``: packed operands, cuBLAS
  bf16 or torch's fp8 rowwise GEMM, the same softmax epilogue in Triton) at several query-row chunks, with the
  share of (head, query block, key block) selections at tau 0.9 that differ from the default kernel's;
- cuDNN SDPA dense attention, the reference the issue's 5 % target is stated against.
Also checks each variant's scores against the default launch's. Prints a table; writes ``<out>.json``
with every timing and ``best``: the fastest correct shape per stride at the last length, which
``xattn_speed.py --est-tiles-json`` can take.

    python bench/xattn_est_sweep.py --lens 32768,131072 --out bench/results/xattn_kernels/xattn_est_sweep
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel
from xattn_speed import bench_ms, planted_qkv

from attention_backend.kernels import EstimateTiles, PagedKV, estimate_block_scores, select_blocks_indexed
from attention_backend.kernels.estimate import _load_kv_rows, row_descriptor

BLOCK = 128
def gemm_variant(chunk: int, fp8: bool, bm: int, bn: int, warps: int, *, streams: int = 1, grouped: bool = False,
                 cols: int = 1, plain: bool = False) -> tuple[bool, EstimateTiles]:
    """One library-GEMM estimate of the sweep: (fp8 operands, its ``EstimateTiles``): ``chunk`` query rows per GEMM,
    a ``bm`` x ``bn`` epilogue on ``warps`` warps, over ``streams`` streams, ``grouped`` over KV heads (``plain``: one
    plain GEMM per KV head into the grouped chunk, not the library's grouped kernel), ``cols`` tiles an epilogue program."""
    return fp8, EstimateTiles(bm=bm, bn=bn, num_warps=warps, gemm=True, gemm_chunk=chunk, gemm_streams=streams,
                              gemm_grouped=grouped, gemm_epilogue_cols=cols, gemm_grouped_kernel=not plain)  # fmt: skip


def gemm_key(stride: int, fp8: bool, t: EstimateTiles) -> str:
    """The variant's name in the sweep's JSON and log (``bench/xattn_curve.py --gemm-from-sweep`` reads them back)."""
    return (f"s{stride}_gemm_c{t.gemm_chunk}" + ("_fp8" if fp8 else "") + f"_e{t.bm}x{t.bn}w{t.num_warps}"
            + (f"_s{t.gemm_streams}" if t.gemm_streams > 1 else "") + ("_grouped" if t.gemm_grouped else "")
            + ("" if t.gemm_grouped_kernel else "_plain")
            + (f"_ec{t.gemm_epilogue_cols}" if t.gemm_epilogue_cols > 1 else ""))  # fmt: skip


GEMM_FIELDS = ("bm", "bn", "num_warps", "gemm", "gemm_chunk", "gemm_streams", "gemm_grouped", "gemm_epilogue_cols",
               "gemm_grouped_kernel", "gemm_last_first")  # fmt: skip
"""The ``EstimateTiles`` fields a library-GEMM variant sets (written to the JSON, to rebuild it; a JSON from before a
field existed rebuilds with its default)."""

GEMM_VARIANTS = (
    gemm_variant(1024, False, 128, 256, 8),  # bf16: 12.7 ms at 128K in the first H100 run (chunks 512 / 2048: 13.3 / 13.8)
    *(gemm_variant(chunk, True, 128, 256, 8) for chunk in (512, 1024, 2048)),
    # Epilogue tiles from 254 down to 64 registers a thread (ptxas for sm_90a, bench/xattn_gemm_regs.py): the
    # default 128 x 256 on 8 warps fits one CTA (8 warps) an SM, too few to hide the latency of a streaming kernel.
    *(gemm_variant(1024, True, bm, bn, w) for bm, bn, w in ((64, 128, 4), (128, 128, 8), (64, 128, 8), (32, 256, 8),
                                                            (64, 64, 4))),  # fmt: skip
    # H100, 2026-12-07: 64 x 128 on 8 warps fastest (7.99 ms at 128K: fp8 GEMMs 3.32, epilogue 3.00, serial on one
    # stream); the same over 2 streams so each epilogue overlaps the next GEMM (EstimateTiles.gemm_streams)
    *(gemm_variant(chunk, True, 64, 128, 8, streams=2) for chunk in (1024, 2048)),
    # H100, 2026-12-07 11:00 UTC: the 64 pairs of a 128K call take 6 ms to enqueue (host), as long as their kernels;
    # grouped: one batched GEMM + one epilogue a chunk over all 8 KV heads (16 launches at 1,024 rows, not 128)
    *(gemm_variant(chunk, True, 64, 128, 8, streams=streams, grouped=True)
      for chunk, streams in ((512, 1), (512, 2), (1024, 1), (1024, 2))),  # fmt: skip
    # H100, 10:49 UTC: grouped 512 / 2 streams fastest (7.72 ms: GEMM 4.09, epilogue 2.63 at a third of the card's
    # bandwidth); each epilogue program walking 4 or 8 tiles of its rows (EstimateTiles.gemm_epilogue_cols)
    *(gemm_variant(512, True, 64, 128, 8, streams=streams, grouped=True, cols=cols) for streams in (1, 2)
      for cols in (4, 8)),  # fmt: skip
    # 2026-12-07 13:40 UTC: the epilogue loads a key block's logits as one 16-byte vector and reduces it in registers
    # (it loaded 2 bytes at a time and reduced across threads: its strides were unspecialised, bench/xattn_gemm_regs.py);
    # larger epilogue tiles again, and bf16 operands grouped (the library's bf16 GEMM against the fused kernel)
    *(gemm_variant(512, fp8, bm, bn, w, streams=streams, grouped=True) for fp8 in (True, False)
      for bm, bn, w in ((128, 128, 8), (128, 256, 8)) for streams in (1, 2)),  # fmt: skip
    *(gemm_variant(512, False, 64, 128, 8, streams=streams, grouped=True) for streams in (1, 2)),
    # H100, 13:46 UTC: CUTLASS's grouped fp8 GEMM takes 4.1 ms at 128K where cuBLAS's plain one took 3.3 per KV head,
    # ungrouped (then bound by 64 pairs of host launches): a plain GEMM per KV head into the grouped chunk's buffer,
    # one epilogue a chunk (EstimateTiles.gemm_grouped_kernel=False; 9 launches a chunk, not 16). H100, 16:21 UTC:
    # 1,024-row chunks on one stream the fastest at 128K (5.92 ms) and over 32K-128K: FP8_GEMM_TILES since
    *(gemm_variant(chunk, True, 64, 128, 8, streams=streams, grouped=True, plain=True) for chunk in (512, 1024)
      for streams in (1, 2)),  # fmt: skip
)
SHAPES = (  # (bm, bn, num_warps, num_stages, bk, tma)
    (128, 256, 8, 3, 64, False),
    (128, 128, 8, 2, 128, False),
    (128, 256, 8, 3, 64, True),
    (128, 256, 8, 4, 64, True),
    (128, 256, 8, 2, 128, True),
    (128, 128, 8, 3, 64, True),
    (128, 128, 8, 4, 64, True),
    (128, 128, 8, 3, 128, True),
    (256, 128, 8, 3, 64, True),
    (64, 256, 4, 3, 64, True),
    (128, 256, 8, 3, 128, True),  # 128-byte rows for fp8 operands (bf16: too much shared memory, recorded)
    (128, 256, 8, 4, 128, True),
)


@triton.jit
def _gemm_rowmax_kernel(
    q_ptr, k_ptr, bt_ptr, out_ptr,
    k_len, page_size, n_rows, s_qt, s_qh, s_kp, s_kt, s_kh,
    GROUP: tl.constexpr, S: tl.constexpr, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    """The flat kernel's loads and MMAs (q_offset 0), with only a row max per key tile as epilogue."""
    tile = tl.cdiv(n_rows, BM) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kvh_off = (h // GROUP).to(tl.int64) * s_kh
    dk = tl.arange(0, BK)
    NSL: tl.constexpr = D // BK
    NK: tl.constexpr = S * NSL
    rows = tile * BM + tl.arange(0, BM)
    j_end = tile * BM + BM
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    best = tl.zeros((BM,), dtype=tl.float32)
    for it in range(tl.cdiv(j_end, BN) * NK):
        kk = it % NK
        t = kk // NSL
        d0 = (kk % NSL) * BK
        qtok = rows * S + (S - 1 - t)
        qt = tl.load(q_ptr + h.to(tl.int64) * s_qh + qtok.to(tl.int64)[:, None] * s_qt + d0 + dk[None, :],
                     mask=(qtok < k_len)[:, None], other=0.0)
        cols = (it // NK) * BN + tl.arange(0, BN)
        kt = _load_kv_rows(k_ptr, bt_ptr, cols * S + t, k_len, page_size, s_kp, s_kt, kvh_off + d0, dk)
        acc = tl.dot(qt, tl.trans(kt), acc)
        if kk == NK - 1:
            best = tl.maximum(best, tl.max(acc, 1))
            acc = tl.zeros((BM, BN), dtype=tl.float32)
    tl.store(out_ptr + h * n_rows + rows, best, mask=rows < n_rows)


@triton.jit
def _gemm_rowmax_tma_kernel(
    q_desc, k_desc, out_ptr, n_rows, s_qt, s_qh, s_kt, s_kh,
    GROUP: tl.constexpr, S: tl.constexpr, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):
    """The TMA kernel's loads and MMAs (2-D boxes, q_offset 0, one program per query tile and head), with only a
    row max per key tile as epilogue: what the softmax epilogue costs is the difference."""
    tile = tl.cdiv(n_rows, BM) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP
    NSL: tl.constexpr = D // BK
    NK: tl.constexpr = S * NSL
    rows = tile * BM + tl.arange(0, BM)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    best = tl.zeros((BM,), dtype=tl.float32)
    for it in range(tl.cdiv(tile * BM + BM, BN) * NK):
        kk = it % NK
        t = kk // NSL
        d0 = (kk % NSL) * BK
        qt = q_desc.load([tile * BM, (S - 1 - t) * s_qt + h * s_qh + d0])
        kt = k_desc.load([(it // NK) * BN, t * s_kt + kvh * s_kh + d0])
        acc = tl.dot(qt, kt.T, acc)
        if kk == NK - 1:
            best = tl.maximum(best, tl.max(acc, 1))
            acc = tl.zeros((BM, BN), dtype=tl.float32)
    tl.store(out_ptr + h * n_rows + rows, best, mask=rows < n_rows)


def gemm_rowmax_tma(q: torch.Tensor, k: torch.Tensor, stride: int, tiles: EstimateTiles) -> torch.Tensor:
    """``_gemm_rowmax_tma_kernel`` on contiguous ``q [L, Hq, D]`` and ``k [L, Hkv, D]`` (L a multiple of S)."""
    lq, hq, d = q.shape
    n_rows, bk = lq // stride, tiles.bk or d
    out = torch.empty((hq, n_rows), dtype=torch.float32, device=q.device)
    _gemm_rowmax_tma_kernel[(triton.cdiv(n_rows, tiles.bm), hq)](
        row_descriptor(q, stride, tiles.bm, bk), row_descriptor(k, stride, tiles.bn, bk), out, n_rows, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        GROUP=hq // k.shape[1], S=stride, D=d, BM=tiles.bm, BN=tiles.bn, BK=bk,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out


def gemm_rowmax(q: torch.Tensor, kv: PagedKV, stride: int, tiles: EstimateTiles) -> torch.Tensor:
    lq, hq, d = q.shape
    n_rows = lq // stride
    out = torch.empty((hq, n_rows), dtype=torch.float32, device=q.device)
    kc = kv.key_cache
    _gemm_rowmax_kernel[(triton.cdiv(n_rows, tiles.bm), hq)](
        q, kc, kv.block_table, out, kv.k_len, kv.page_size, n_rows,
        q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2),
        GROUP=hq // kv.num_kv_heads, S=stride, D=d, BM=tiles.bm, BN=tiles.bn, BK=tiles.bk or d,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out


def cublas_same_gemm(q: torch.Tensor, k: torch.Tensor, stride: int) -> dict[str, float]:
    """cuBLAS bmm on the reshaped operands (queries reversed within each S-group), every tile."""
    lq, hq, d = q.shape
    group = hq // k.shape[1]
    qr = q.view(lq // stride, stride, hq, d).flip(1).permute(2, 0, 1, 3).reshape(hq, lq // stride, stride * d)
    kr = k.view(lq // stride, stride, k.shape[1], d).permute(2, 0, 1, 3).reshape(k.shape[1], lq // stride, stride * d)
    kr = kr.repeat_interleave(group, 0).transpose(1, 2).contiguous()
    out = torch.empty((hq, lq // stride, lq // stride), dtype=q.dtype, device=q.device)
    ms = bench_ms(functools.partial(torch.bmm, qr, kr, out=out), budget_ms=500)
    flops = 2 * hq * (lq // stride) ** 2 * stride * d
    del qr, kr, out
    torch.cuda.empty_cache()
    return {"ms_all_tiles": ms, "ms_causal_half": ms / 2, "tflops": flops / (ms * 1e-3) / 1e12}


def kernel_breakdown(fn: Any) -> dict[str, float]:
    """GPU time of one call of ``fn`` per kernel name (torch profiler), the 8 largest, ms."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    times: dict[str, float] = {}
    for ev in prof.key_averages():
        us = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0.0)
        if us:
            times[ev.key[:60]] = times.get(ev.key[:60], 0.0) + us / 1e3
    return dict(sorted(times.items(), key=lambda kv: -kv[1])[:8])


def host_ms(fn: Any, reps: int = 5) -> float:
    """Median host (CPU) time to enqueue one call of ``fn``, the GPU idle before each: when it nears the CUDA-event
    time, the call is bound by its launches, not by its kernels."""
    fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    torch.cuda.synchronize()
    return sorted(times)[reps // 2]


def tag(shape: tuple) -> str:
    bm, bn, w, st, bk, tma = shape
    return f"{'tma' if tma else 'flat'}_bm{bm}_bn{bn}_bk{bk or 'D'}_w{w}_st{st}"


def paged_copy(k: torch.Tensor, v: torch.Tensor, page: int, seed: int) -> PagedKV:
    """``k, v`` copied into a vLLM-style cache of ``page``-token pages under a shuffled block table."""
    n_pages = -(-k.shape[0] // page)
    table = torch.randperm(n_pages, generator=torch.Generator().manual_seed(seed)).to(k.device)
    caches = []
    for x in (k, v):
        logical = torch.zeros((n_pages * page, *x.shape[1:]), dtype=x.dtype, device=x.device)
        logical[: x.shape[0]] = x
        cache = torch.empty_like(logical).view(n_pages, page, *x.shape[1:])
        cache[table] = logical.view(n_pages, page, *x.shape[1:])
        caches.append(cache)
    return PagedKV(caches[0], caches[1], table.to(torch.int32), k.shape[0])


def run_length(length: int, strides: list[int], args: argparse.Namespace) -> dict[str, Any]:
    q, k, v = planted_qkv(length, args.heads, args.kv_heads, args.head_dim, seed=1)
    kv = PagedKV.from_contiguous(k, v)
    row: dict[str, Any] = {"length": length}
    qt = q.transpose(0, 1).unsqueeze(0)
    kr, vr = (x.repeat_interleave(args.heads // args.kv_heads, 1).transpose(0, 1).unsqueeze(0) for x in (k, v))
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        row["cudnn_ms"] = bench_ms(functools.partial(F.scaled_dot_product_attention, qt, kr, vr, is_causal=True))
    del qt, kr, vr
    torch.cuda.empty_cache()
    for stride in strides:
        causal_flops = 2 * args.heads * (length // stride) * (length // stride + 1) / 2 * stride * args.head_dim
        ref = estimate_block_scores(q, kv, block_size=BLOCK, stride=stride)
        for shape in SHAPES if not args.default_only else [s for s in SHAPES if EstimateTiles(*s) == EstimateTiles()]:
            tiles = EstimateTiles(*shape)
            # bf16 operands; and, with --fp8, the same TMA shape on fp8 operands (estimate_fp8)
            for fp8 in (False, True) if args.fp8 and shape[5] else (False,):
                key = f"s{stride}_{tag(shape)}" + ("_fp8" if fp8 else "")
                try:
                    fn = functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=stride, tiles=tiles,
                                           fp8=fp8)
                    err = (fn() - ref).abs().max().item()  # against the default bf16 launch
                    ms = bench_ms(fn)
                    row[key] = {"ms": ms, "max_abs_diff": err, "pct_cudnn": 100 * ms / row["cudnn_ms"],
                                "tflops": causal_flops / (ms * 1e-3) / 1e12}
                    if not shape[5]:
                        row[key]["gemm_only_ms"] = bench_ms(functools.partial(gemm_rowmax, q, kv, stride, tiles))
                    elif not fp8:
                        row[key]["gemm_only_ms"] = bench_ms(functools.partial(gemm_rowmax_tma, q, k, stride, tiles))
                except Exception as exc:  # a shape that does not compile/fit is recorded, not fatal
                    row[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                print(key, row[key], flush=True)
        timed = [(row[f"s{stride}_{tag(sh)}"].get("ms", math.inf), sh) for sh in SHAPES if f"s{stride}_{tag(sh)}" in row and sh[5]]
        shape = min(timed)[1]
        for page in (128, 16):  # vLLM's paged cache: the TMA kernel first gathers the keys contiguous
            paged = paged_copy(k, v, page, seed=page)
            fn = functools.partial(estimate_block_scores, q, paged, block_size=BLOCK, stride=stride,
                                   tiles=EstimateTiles(*shape))
            err = (fn() - ref).abs().max().item()
            row[f"s{stride}_{tag(shape)}_page{page}"] = {"ms": bench_ms(fn), "max_abs_diff": err}
            print(f"s{stride}_{tag(shape)}_page{page}", row[f"s{stride}_{tag(shape)}_page{page}"], flush=True)
            del paged
            torch.cuda.empty_cache()
        mask_ref = select_blocks_indexed(ref, 0.9, first_qb=0)[0]
        for fp8, tiles in GEMM_VARIANTS:
            key = gemm_key(stride, fp8, tiles)
            # what rebuilds this variant (bench/xattn_curve.py --gemm-from-sweep): fp8 and the EstimateTiles fields
            variant = {"fp8": fp8, "tiles": {f: getattr(tiles, f) for f in GEMM_FIELDS}}
            try:
                fn = functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=stride, fp8=fp8,
                                       tiles=tiles)
                got = fn()
                changed = (select_blocks_indexed(got, 0.9, first_qb=0)[0] != mask_ref).sum().item()
                ms = bench_ms(fn)
                row[key] = {"variant": variant, "ms": ms, "max_abs_diff": (got - ref).abs().max().item(),
                            "selection_changed_tau09": changed / max(1, mask_ref.sum().item()),
                            "pct_cudnn": 100 * ms / row["cudnn_ms"], "tflops": causal_flops / (ms * 1e-3) / 1e12,
                            "kernels_ms": kernel_breakdown(fn), "host_ms": host_ms(fn)}
                del got
            except Exception as exc:  # recorded, not fatal
                row[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(key, row[key], flush=True)
        row[f"s{stride}_cublas"] = cublas_same_gemm(q, k, stride)
        print(f"s{stride}_cublas", row[f"s{stride}_cublas"], flush=True)
    del q, k, v, kv
    torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="32768,131072")
    ap.add_argument("--strides", default="8,16")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--fp8", action="store_true", help="also time every TMA shape on fp8 operands (estimate_fp8)")
    ap.add_argument("--default-only", action="store_true",
                    help="of the Triton kernel's launch shapes, time only the default one (EstimateTiles())")
    ap.add_argument("--out", default="bench/results/xattn_kernels/xattn_est_sweep")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("xattn_est_sweep needs a CUDA GPU")
    strides = [int(s) for s in args.strides.split(",")]
    rows = [run_length(int(x), strides, args) for x in args.lens.split(",")]
    last = rows[-1]
    best = {}
    print(f"{'L':>7} {'S':>3} {'variant':<34} {'ms':>8} {'%cuDNN':>7} {'TF/s':>6} {'gemm-only':>9} {'maxdiff':>8}")
    for row in rows:
        for stride in strides:
            for shape in (sh for sh in SHAPES if f"s{stride}_{tag(sh)}" in row):
                r = row[f"s{stride}_{tag(shape)}"]
                if "error" in r:
                    print(f"{row['length']:>7} {stride:>3} {tag(shape):<34} {r['error'][:60]}")
                    continue
                print(f"{row['length']:>7} {stride:>3} {tag(shape):<34} {r['ms']:8.2f} {r['pct_cudnn']:7.2f}"
                      f" {r['tflops']:6.0f} {r.get('gemm_only_ms', math.nan):9.2f} {r['max_abs_diff']:8.1e}")
            for key in (x for x in row if x.startswith(f"s{stride}_") and "_page" in x):
                r = row[key]
                print(f"{row['length']:>7} {stride:>3} {key[len(f's{stride}_'):]:<34} {r['ms']:8.2f}"
                      f" {100 * r['ms'] / row['cudnn_ms']:7.2f} {'':>6} {'':>9} {r['max_abs_diff']:8.1e}")
            for key in (x for x in row if x.startswith(f"s{stride}_gemm_")):
                r = row[key]
                if "error" in r:
                    print(f"{row['length']:>7} {stride:>3} {key[len(f's{stride}_'):]:<34} {r['error'][:60]}")
                    continue
                print(f"{row['length']:>7} {stride:>3} {key[len(f's{stride}_'):]:<34} {r['ms']:8.2f} {r['pct_cudnn']:7.2f}"
                      f" {r['tflops']:6.0f} {'':>9} {r['max_abs_diff']:8.1e}  sel. changed {r['selection_changed_tau09']:.4f}"
                      f"  host {r.get('host_ms', math.nan):.2f} ms")
                print("          " + ", ".join(f"{k} {v:.2f}" for k, v in r["kernels_ms"].items()))
            c = row[f"s{stride}_cublas"]
            print(f"{row['length']:>7} {stride:>3} {'cuBLAS same GEMM, causal half':<34} {c['ms_causal_half']:8.2f}"
                  f" {100 * c['ms_causal_half'] / row['cudnn_ms']:7.2f} {c['tflops']:6.0f}")
    for stride in strides:
        ok = [(last[f"s{stride}_{tag(s)}"]["ms"], s) for s in SHAPES
              if "ms" in last.get(f"s{stride}_{tag(s)}", {}) and last[f"s{stride}_{tag(s)}"]["max_abs_diff"] < 1e-3]
        ms, shape = min(ok)
        best[str(stride)] = dict(zip(("bm", "bn", "num_warps", "num_stages", "bk", "tma"), shape, strict=True))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "inputs": "planted (xattn_speed.planted_qkv, seed 1), contiguous K as one page", "block": BLOCK,
            "heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "best": best}, indent=1))
    print("best", json.dumps(best))


if __name__ == "__main__":
    main()
