"""How many CUDA streams should the fa3 sparse kernel's per-head calls use? (and what the default costs end to end)

The d 128 default of ``attention_backend/vllm/fa3_sparse.py`` is one FA3 call per query head, query blocks last
first, spread over ``PER_HEAD_STREAMS_BY_HEAD_DIM`` streams so one call's tail overlaps the next. At density 0.1 on
128K its points sit at 86-89 % of FA3 per computed block (a fixed cost of 1.5-2.5 ms a call in the curve's line fit,
``bench/results/xattn_curve/notes.md``). This times ``fa3_attend`` as the backend calls it (page tables built on the
GPU in the last-first order, TMA pages) at each stream count, against vLLM's FA3 in the same run, on the masks of
``xattn_curve.block_mask``, and checks every stream count writes the same output as the first. With ``--e2e`` it
also times the fp8 estimate (``FP8_GEMM_TILES``; and with its chunks first first, the order before 79b99a4) and the
selection once and reports estimate + selection + the fastest stream count against FA3 at each point (``sum``), and
(``pipe``) times estimate -> selection -> the sparse call at that count as ONE function, the way the backend issues a
layer (no host sync between them): each part timed alone also waits for the host to enqueue its first kernel (about
1.6 ms for the sparse call's 32 FA3 calls: the profile's span against their event time), which the backend hides
behind the GPU's earlier work. The pipeline's selection runs on the estimated scores, its sparse call on the point's
given mask (as the parts do). With ``--profile`` it says where the time above density x FA3 goes at the fastest stream
count, from one profiled call (torch profiler): the sum of the FA3 kernels' own times against density x FA3's kernel
(the kernels' fixed cost per query tile), the GPU's busy time (union of kernel intervals over all streams) against its
span (idle: waits on the host or between streams), the other kernels (page tables), and the host time to enqueue one
call.

    python3 bench/xattn_fa3_streams.py --out bench/results/xattn_curve/fa3_streams   # on the GPU, vLLM carried

Device command: ``STREAMS=1 SHAPES=none bash bench/h200/curve.sh``; results in ``bench/results/xattn_curve/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch
from xattn_curve import BLOCK, block_mask, fa3_fn
from xattn_est_sweep import host_ms, kernel_breakdown
from xattn_speed import bench_ms, computed_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--densities", default="0.05,0.1,0.2")
    ap.add_argument("--kinds", default="random,structured")
    ap.add_argument("--streams", default="2,4,8,16")
    ap.add_argument("--e2e", action="store_true", help="also the fp8 estimate and the selection (end to end)")
    ap.add_argument("--profile", action="store_true", help="also where the time goes at the fastest stream count")
    ap.add_argument("--out", type=Path, default=Path("bench/results/xattn_curve/fa3_streams"))
    args = ap.parse_args()
    from attention_backend.kernels import (
        PagedKV,
        PrefillSeq,
        Selection,
        estimate_block_scores,
        mask_to_index,
        select_blocks_indexed,
    )
    from attention_backend.kernels.estimate import FP8_GEMM_TILES
    from attention_backend.vllm.fa3_sparse import fa3_attend

    hq, hkv, d, length = 32, 8, 128, args.length
    n_qb = length // BLOCK
    gen = torch.Generator(device="cuda").manual_seed(length)
    q, k, v = (torch.randn(length, h, d, device="cuda", dtype=torch.bfloat16, generator=gen) for h in (hq, hkv, hkv))
    fa3_ms = bench_ms(fa3_fn(q, k, v))
    fa3_tflops = 4.0 * d * hq * length * (length + 1) / 2 / (fa3_ms * 1e-3) / 1e12
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "length": length,
                           "heads": [hq, hkv, d], "fa3_ms": fa3_ms, "fa3_tflops": fa3_tflops, "points": []}  # fmt: skip
    if args.profile:
        res["fa3_profile"] = gpu_timeline(fa3_fn(q, k, v))
        if not res["fa3_profile"]["fa3_kernels"]:  # the sums below pick FA3's kernels by name
            raise RuntimeError(f"no kernel named *flash* in FA3's profile: {res['fa3_profile']}")
    if args.e2e:
        kv = PagedKV.from_contiguous(k, v)
        est = functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=16, fp8=True, tiles=FP8_GEMM_TILES)
        scores = est()
        res["est_fp8_ms"] = bench_ms(est)
        # the chunk order before 79b99a4 (first chunk first), on the same host: what the last-first order saves
        first_first = functools.partial(est, tiles=dataclasses.replace(FP8_GEMM_TILES, gemm_last_first=False))
        res["est_fp8_first_first_ms"] = bench_ms(first_first)
        res["est_fp8_orders_equal"] = bool(torch.equal(first_first(), scores))
        res["select_ms"] = bench_ms(functools.partial(select_blocks_indexed, scores, 0.9, first_qb=0))
        if args.profile:
            res["est_fp8_profile"] = {**gpu_timeline(est), "kernels_ms": kernel_breakdown(est), "host_ms": host_ms(est)}
        del scores, kv
    pages = (k.view(n_qb, BLOCK, hkv, d), v.view(n_qb, BLOCK, hkv, d))
    page_table = torch.arange(n_qb, dtype=torch.int32, device="cuda")[None]
    streams = [int(x) for x in args.streams.split(",")]
    out = torch.empty_like(q)
    for kind in args.kinds.split(","):
        for density in (float(x) for x in args.densities.split(",")):
            mask = block_mask(kind, density, hq, n_qb, gen)
            idx, count = mask_to_index(mask)
            flops = 4.0 * d * computed_pairs(count, length)
            point: dict[str, Any] = {"kind": kind, "target_density": density,
                                     "density": float(count.sum()) / (hq * n_qb * (n_qb + 1) / 2), "by_streams": {}}  # fmt: skip
            call = functools.partial(fa3_attend, q, *pages, page_table, [PrefillSeq(0, 0, length, length)],
                                     [Selection(mask, idx, count)], block_size=BLOCK, scale=d**-0.5, out=out,
                                     widths=[int(count.max())])  # fmt: skip
            first = None
            for n in streams:
                out.fill_(float("nan"))
                ms = bench_ms(functools.partial(call, per_head_streams=n))
                diff = 0.0 if first is None else float((out.float() - first.float()).abs().max())
                if first is None:
                    first = out.clone()
                point["by_streams"][n] = {"ms": ms, "vs_fa3_per_block": flops / (ms * 1e-3) / 1e12 / fa3_tflops,
                                          "max_abs_diff_vs_first": diff, "nan": bool(out.isnan().any())}  # fmt: skip
            best = min(point["by_streams"], key=lambda n: point["by_streams"][n]["ms"])
            point["fastest_streams"] = best
            if args.profile:
                point["profile"] = profile_call(functools.partial(call, per_head_streams=best), point["density"],
                                                res["fa3_profile"]["fa3_kernel_sum_ms"])  # fmt: skip
            if args.e2e:
                point["e2e_ms"] = res["est_fp8_ms"] + res["select_ms"] + point["by_streams"][best]["ms"]
                point["e2e_speedup_vs_fa3"] = fa3_ms / point["e2e_ms"]
                layer = functools.partial(pipeline, est, call, best)
                point["pipeline_ms"] = bench_ms(layer)
                point["pipeline_speedup_vs_fa3"] = fa3_ms / point["pipeline_ms"]
                if args.profile:
                    point["pipeline_profile"] = gpu_timeline(layer)
            res["points"].append(point)
            print(json.dumps(point), flush=True)
            del mask, idx, count, first
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(f"\n{res['device']}, {length} tokens, {hq} / {hkv} heads, d {d}: FA3 {fa3_ms:.1f} ms ({fa3_tflops:.0f} TFLOP/s)"
          + (f"; fp8 estimate {res['est_fp8_ms']:.2f} ms (first chunk first {res['est_fp8_first_first_ms']:.2f}, same "
             f"scores: {res['est_fp8_orders_equal']}), selection {res['select_ms']:.3f} ms" if args.e2e else ""))
    print("fa3_attend default path (last first, TMA pages), ms (% of FA3 per computed block) by streams:")
    print(f"{'mask':>10} {'density':>7} " + " ".join(f"{'s' + str(n):>14}" for n in streams)
          + f" {'fastest':>7} {'max diff':>8}"
          + (f" {'sum ms':>7} {'FA3/sum':>7} {'pipe ms':>7} {'FA3/pipe':>8}" if args.e2e else ""))  # fmt: skip
    for p in res["points"]:
        by = p["by_streams"]
        cells = " ".join(f"{by[n]['ms']:7.2f} ({100 * by[n]['vs_fa3_per_block']:3.0f} %)" for n in streams)
        diff = max(by[n]["max_abs_diff_vs_first"] for n in streams)
        tail = (f" {p['e2e_ms']:7.2f} {p['e2e_speedup_vs_fa3']:6.2f}x {p['pipeline_ms']:7.2f}"
                f" {p['pipeline_speedup_vs_fa3']:7.2f}x" if args.e2e else "")  # fmt: skip
        print(f"{p['kind']:>10} {p['density']:7.3f} {cells} {p['fastest_streams']:>7} {diff:8.1e}{tail}")
    if args.profile:
        print_profile(res)


def pipeline(est: Any, call: Any, streams: int) -> None:
    """One layer as the backend issues it: the fp8 estimate, the selection on its scores, the sparse call (on the
    point's mask) on ``streams`` streams, no host sync between them."""
    from attention_backend.kernels import select_blocks_indexed

    select_blocks_indexed(est(), 0.9, first_qb=0)
    call(per_head_streams=streams)


def gpu_timeline(fn: Any) -> dict[str, float]:
    """One call of ``fn`` (after a warm-up call) under the torch profiler, ms: ``span`` from the first kernel's start
    to the last one's end, ``busy`` the union of every kernel's interval over all streams (``span - busy``: the GPU
    idle), ``kernel_sum`` the kernels' own times added up (above ``busy`` when streams overlap), and FlashAttention's
    kernels alone (name containing ``flash``): their count, sum and longest."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    spans = sorted((ev.time_range.start, ev.time_range.end, ev.name) for ev in prof.events()
                   if ev.device_type == DeviceType.CUDA)  # fmt: skip
    if not spans:
        raise RuntimeError("the profiler recorded no GPU kernel")
    busy, reach = 0.0, float("-inf")
    for start, end, _ in spans:
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    flash = [end - start for start, end, name in spans if "flash" in name.lower()]
    return {"span_ms": (reach - spans[0][0]) / 1e3, "busy_ms": busy / 1e3,
            "kernel_sum_ms": sum(e - s for s, e, _ in spans) / 1e3, "kernels": len(spans),
            "fa3_kernels": len(flash), "fa3_kernel_sum_ms": sum(flash) / 1e3,
            "fa3_kernel_max_ms": max(flash, default=0.0) / 1e3}  # fmt: skip


def profile_call(fn: Any, density: float, fa3_kernel_ms: float) -> dict[str, Any]:
    """``gpu_timeline`` of one sparse call, the kernels by name and the host's enqueue time; ``ideal_ms`` is density
    x FA3's dense kernel, what the FA3 kernels would take at FA3's rate per computed block."""
    timeline = gpu_timeline(fn)
    return {**timeline, "ideal_ms": density * fa3_kernel_ms,
            "fa3_excess_ms": timeline["fa3_kernel_sum_ms"] - density * fa3_kernel_ms,
            "kernels_ms": kernel_breakdown(fn), "host_ms": host_ms(fn)}  # fmt: skip


def print_profile(res: dict[str, Any]) -> None:
    fa3 = res["fa3_profile"]
    print(f"\nprofiled (one call each): FA3 dense kernel {fa3['fa3_kernel_sum_ms']:.2f} ms, span {fa3['span_ms']:.2f} ms")
    if "est_fp8_profile" in res:
        e = res["est_fp8_profile"]
        print(f"fp8 estimate: span {e['span_ms']:.2f}, busy {e['busy_ms']:.2f}, host {e['host_ms']:.2f} ms; kernels: "
              + ", ".join(f"{k} {v:.2f}" for k, v in e["kernels_ms"].items()))  # fmt: skip
    print(f"{'mask':>10} {'density':>7} {'streams':>7} {'span':>6} {'busy':>6} {'idle':>5} {'FA3 sum':>7} "
          f"{'ideal':>6} {'excess':>6} {'/call':>5} {'others':>6} {'host':>5}  (ms)")  # fmt: skip
    for p in res["points"]:
        f = p.get("profile")
        if f is None:
            continue
        others = f["kernel_sum_ms"] - f["fa3_kernel_sum_ms"]
        per_call = f["fa3_excess_ms"] / max(1, f["fa3_kernels"])
        print(f"{p['kind']:>10} {p['density']:7.3f} {p['fastest_streams']:>7} {f['span_ms']:6.2f} {f['busy_ms']:6.2f} "
              f"{f['span_ms'] - f['busy_ms']:5.2f} {f['fa3_kernel_sum_ms']:7.2f} {f['ideal_ms']:6.2f} "
              f"{f['fa3_excess_ms']:6.2f} {per_call:5.3f} {others:6.2f} {f['host_ms']:5.2f}")  # fmt: skip
    for p in res["points"]:  # under the profiler the host enqueues slower: a span here is an upper bound
        if "pipeline_profile" in p:
            f = p["pipeline_profile"]
            print(f"pipeline {p['kind']} {p['density']:.3f}: span {f['span_ms']:.2f}, busy {f['busy_ms']:.2f}, idle "
                  f"{f['span_ms'] - f['busy_ms']:.2f} ms (event time {p['pipeline_ms']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
