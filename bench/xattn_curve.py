"""XAttention kernel speed at FIXED densities, independent of the input (one GPU, attention only, bf16, causal).

For each length (default 32K, 64K, 128K; 32 query heads, 8 KV heads, head dim 128, block 128) and each
density (default 0.05, 0.1, 0.2, 0.3, 0.5) and block-mask kind:
- ``random``: every causal block kept with the same probability (sink and diagonal always kept), so kept
  blocks are scattered: the worst case for locality;
- ``structured``: per query block the sink, then the blocks nearest the diagonal (a local band), as many
  as the density asks for: the usual shape of real attention (sink + recent);
it times our block-sparse Triton kernel on the given blocks, the same blocks on vLLM's FlashAttention 3 through
per-block page tables (``attention_backend.vllm.fa3_sparse``, ``auto``'s sparse kernel at d 128 and 256 on an
H100; tables, copies and FA3 all timed) in its forms: head-major copies with plain or TMA page loads, and copy-free
per-head calls on 1 and 4 streams (the d 128 default), FlexAttention (compiled) on the same blocks, and
once per length vLLM's FlashAttention 3 (``vllm.vllm_flash_attn.flash_attn_varlen_func``, ``fa_version=3``,
GQA native), cuDNN SDPA (K/V repeated to 32 heads) and our estimation (S = 8 and 16) + selection, whose
cost does not depend on the density. End to end = estimation + selection + sparse, against FA3.
The break-even density (where the sparse kernel alone costs what FA3 costs: once the estimate is paid,
the vLLM adapter picks the cheaper of the two) is fitted per length and mask kind.

    python3 bench/xattn_curve.py --out $OUT/xattn_curve          # on the GPU: JSON (+ log)
    python3 bench/xattn_curve.py --render bench/results/xattn_curve/xattn_curve.json   # table + PNG, anywhere

Exact device commands: ``bench/h200/curve.sh``; results and notes: ``bench/results/xattn_curve/``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import traceback
from pathlib import Path
from typing import Any

BLOCK = 128
PER_HEAD_STREAMS = (1, 4)  # fa3_attend(per_head_streams=): the copy-free variant, on 1 and 4 CUDA streams (--per-head-streams)
"""The last of them also runs last first (``descending=True``)."""


def block_mask(kind: str, density: float, hq: int, n_qb: int, gen: Any) -> Any:
    """A causal ``[Hq, n_qb, n_qb]`` bool block mask of about ``density`` of the causal blocks."""
    import torch

    qb = torch.arange(n_qb, device="cuda")
    kb = torch.arange(n_qb, device="cuda")
    causal = kb[None, :] <= qb[:, None]
    forced = causal & ((kb[None, :] == 0) | (kb[None, :] == qb[:, None]))
    if kind == "random":
        n_causal = n_qb * (n_qb + 1) / 2
        n_forced = float(forced.sum())
        p = max(0.0, (density * n_causal - n_forced) / max(n_causal - n_forced, 1.0))
        keep = torch.rand((hq, n_qb, n_qb), device="cuda", generator=gen) < p
        return (keep & causal) | forced
    if kind == "structured":
        width = torch.clamp((density * (qb + 1)).round().long(), min=1)  # blocks per row incl. the diagonal
        band = (kb[None, :] > qb[:, None] - width[:, None]) & causal
        return (band | forced).expand(hq, n_qb, n_qb).contiguous()
    raise ValueError(f"mask kind: expected random or structured, got {kind!r}")


def fa3_fn(q: Any, k: Any, v: Any) -> Any:
    """vLLM's FlashAttention 3 on one causal sequence (the kernel FLASH_ATTN runs on Hopper)."""
    import torch
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    n = q.shape[0]
    cu = torch.tensor([0, n], dtype=torch.int32, device="cuda")
    out = torch.empty_like(q)
    return functools.partial(
        flash_attn_varlen_func, q, k, v, max_seqlen_q=n, cu_seqlens_q=cu, max_seqlen_k=n, cu_seqlens_k=cu,
        causal=True, fa_version=3, out=out,
    )


def run_length(length: int, args: argparse.Namespace, flex: Any) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from xattn_speed import bench_ms, computed_pairs, run_flex

    from attention_backend.kernels import (
        EstimateTiles,
        PagedKV,
        PrefillSeq,
        Selection,
        block_sparse_attention_indexed,
        estimate_block_scores,
        mask_to_index,
        select_blocks_indexed,
    )

    hq, hkv, d = args.heads, args.kv_heads, args.head_dim
    gen = torch.Generator(device="cuda").manual_seed(length)
    q, k, v = (torch.randn(length, h, d, device="cuda", generator=gen, dtype=torch.bfloat16) for h in (hq, hkv, hkv))
    dense_flops = 4.0 * d * hq * length * (length + 1) / 2
    res: dict[str, Any] = {"length": length, "dense_flops": dense_flops, "points": []}
    res["fa3_ms"] = bench_ms(fa3_fn(q, k, v))
    res["fa3_tflops"] = dense_flops / (res["fa3_ms"] * 1e-3) / 1e12
    group = hq // hkv
    qt = q.transpose(0, 1).unsqueeze(0)
    kt, vt = (t.repeat_interleave(group, 1).transpose(0, 1).unsqueeze(0) for t in (k, v))
    try:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            res["cudnn_ms"] = bench_ms(functools.partial(F.scaled_dot_product_attention, qt, kt, vt, is_causal=True))
    except Exception as exc:  # a baseline that cannot run is reported, not hidden
        res["cudnn_error"] = f"{type(exc).__name__}: {exc}"[:300]
    del kt, vt
    torch.cuda.empty_cache()
    kv = PagedKV.from_contiguous(k, v)
    for stride in (8, 16):
        scores = estimate_block_scores(q, kv, block_size=BLOCK, stride=stride)
        res[f"est_s{stride}_ms"] = bench_ms(
            functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=stride, out=scores)
        )
    res["select_ms"] = bench_ms(functools.partial(select_blocks_indexed, scores, 0.9, first_qb=0))
    try:  # S=16, the fused kernel on fp8 operands (estimate_fp8 itself runs FP8_GEMM_TILES on sm_90: the
        # est_s16_gemm_best line when the sweep picked it): time, and how far its scores are from the bf16 ones
        fused = EstimateTiles()
        fp8 = estimate_block_scores(q, kv, block_size=BLOCK, stride=16, fp8=True, tiles=fused)
        res["est_s16_fp8_ms"] = bench_ms(
            functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=16, out=fp8, fp8=True, tiles=fused)
        )
        res["est_s16_fp8_max_abs_diff"] = float((fp8 - scores).abs().max())
        del fp8
    except Exception as exc:  # reported in the JSON, not hidden
        res["est_fp8_error"] = f"{type(exc).__name__}: {exc}"[:300]
    mask_ref = select_blocks_indexed(scores, 0.9, first_qb=0)[0]
    # what estimate_fp8 runs at S=16 on sm_90 (FP8_GEMM_TILES), and the same launch on bf16 operands
    from attention_backend.kernels.estimate import FP8_GEMM_TILES

    gemm_runs = [("est_s16_gemm", False, FP8_GEMM_TILES), ("est_s16_gemm_fp8", True, FP8_GEMM_TILES)]
    for name, on_fp8 in (("est_s16_gemm_best", True), ("est_s16_gemm_best_bf16", False)) if args.gemm_from_sweep else ():
        best = sweep_best_gemm(args.gemm_from_sweep, on_fp8)  # the sweep's fastest library-GEMM variant (fp8, bf16)
        if best is None:  # said in the JSON and the log, the curve goes on
            res[f"{name}_error"] = f"no S=16 library-GEMM variant qualified in {args.gemm_from_sweep}"
            print(res[f"{name}_error"], flush=True)
        else:
            res[f"{name}_variant"] = best[2]
            gemm_runs.append((name, best[0], best[1]))
    for name, fp8, tiles in gemm_runs:  # S=16 with the GEMM by the library (kernels.estimate_gemm)
        try:
            fn = functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=16, fp8=fp8, tiles=tiles)
            got = fn()
            res[f"{name}_ms"] = bench_ms(fn)
            res[f"{name}_max_abs_diff"] = float((got - scores).abs().max())
            changed = (select_blocks_indexed(got, 0.9, first_qb=0)[0] != mask_ref).sum().item()
            res[f"{name}_selection_changed_tau09"] = changed / max(1, mask_ref.sum().item())
            del got
        except Exception as exc:  # reported in the JSON, not hidden
            res[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    del scores, mask_ref
    n_qb = -(-length // BLOCK)
    out = torch.empty_like(q)
    out_fa3 = torch.empty_like(q)
    fa3_attend = None
    try:
        from attention_backend.vllm.fa3_sparse import fa3_attend
    except ImportError as exc:  # reported in the JSON, not hidden
        res["fa3_sparse_error"] = f"{type(exc).__name__}: {exc}"[:300]
    pages = (k.view(n_qb, BLOCK, hkv, d), v.view(n_qb, BLOCK, hkv, d)) if length % BLOCK == 0 else None
    page_table = torch.arange(n_qb, dtype=torch.int32, device="cuda")[None]
    for kind in args.kinds:
        for density in args.densities:
            point: dict[str, Any] = {"kind": kind, "target_density": density}
            try:
                mask = block_mask(kind, density, hq, n_qb, gen)
                idx, count = mask_to_index(mask)
                point["density"] = float(count.sum()) / (hq * n_qb * (n_qb + 1) / 2)
                point["sparse_ms"] = bench_ms(
                    functools.partial(block_sparse_attention_indexed, q, kv, idx, count, block_size=BLOCK, out=out)
                )
                point["sparse_tflops"] = 4.0 * d * computed_pairs(count, length) / (point["sparse_ms"] * 1e-3) / 1e12
                point["sparse_vs_fa3_tflops"] = point["sparse_tflops"] / res["fa3_tflops"]
                if fa3_attend is not None and pages is not None:
                    call = functools.partial(
                        fa3_attend, q, *pages, page_table, [PrefillSeq(0, 0, length, length)],
                        [Selection(mask, idx, count)], block_size=BLOCK, scale=d**-0.5, out=out_fa3,
                        widths=[int(count.max())], tma_pages=False, per_head_streams=0,  # copies, plain tables
                    )
                    point["fa3sparse_ms"] = bench_ms(call)
                    point["fa3sparse_tflops"] = 4.0 * d * computed_pairs(count, length) / (point["fa3sparse_ms"] * 1e-3) / 1e12
                    point["fa3sparse_vs_fa3_tflops"] = point["fa3sparse_tflops"] / res["fa3_tflops"]
                    point["fa3sparse_vs_triton_max_abs_diff"] = float((out_fa3.float() - out.float()).abs().max())
                    point["fa3sparse_tma_ms"] = bench_ms(functools.partial(call, tma_pages=True))
                    point["fa3sparse_tma_vs_triton_max_abs_diff"] = float((out_fa3.float() - out.float()).abs().max())
                    # no head-major copies: one FA3 call per head over n streams, query blocks ascending; on the most
                    # streams also last first (fa3_attend(descending=True): FA3's op with seqused_q)
                    for n, desc in [(n, False) for n in args.per_head_streams] + [(args.per_head_streams[-1], True)]:
                        key = f"fa3sparse_ph{n}" + ("_desc" if desc else "")
                        out_fa3.fill_(float("nan"))
                        ms = bench_ms(functools.partial(call, tma_pages=True, per_head_streams=n, descending=desc))
                        point[f"{key}_tma_ms"] = ms
                        point[f"{key}_tma_vs_fa3_tflops"] = (
                            4.0 * d * computed_pairs(count, length) / (ms * 1e-3) / 1e12 / res["fa3_tflops"])
                        point[f"{key}_vs_triton_max_abs_diff"] = float((out_fa3.float() - out.float()).abs().max())
                for stride in (8, 16):
                    total = res[f"est_s{stride}_ms"] + res["select_ms"] + point["sparse_ms"]
                    point[f"e2e_s{stride}_ms"] = total
                    point[f"e2e_s{stride}_speedup_vs_fa3"] = res["fa3_ms"] / total
                    if stride == 16 and "fa3sparse_ms" in point:  # the fastest estimate and sparse kernel measured
                        best = min((point[x], x) for x in point if x.startswith("fa3sparse") and x.endswith("_ms"))
                        est = min((res[x], x) for x in ("est_s16_ms", "est_s16_gemm_ms", "est_s16_gemm_fp8_ms", "est_s16_gemm_best_ms", "est_s16_gemm_best_bf16_ms") if x in res)
                        point["e2e_best_s16_ms"] = est[0] + res["select_ms"] + best[0]
                        point["e2e_best_s16_parts"] = [est[1], best[1]]
                        point["e2e_best_s16_speedup_vs_fa3"] = res["fa3_ms"] / point["e2e_best_s16_ms"]
                    if "fa3sparse_ms" in point:
                        total = res[f"est_s{stride}_ms"] + res["select_ms"] + point["fa3sparse_ms"]
                        point[f"e2e_fa3sparse_s{stride}_ms"] = total
                        point[f"e2e_fa3sparse_s{stride}_speedup_vs_fa3"] = res["fa3_ms"] / total
                if flex is not None:
                    point.update(run_flex(flex, q, k, v, mask, idx, count, length))
                del mask, idx, count
            except Exception as exc:
                point["error"] = f"{type(exc).__name__}: {exc}"[:400]
                traceback.print_exc()
            res["points"].append(point)
            print(json.dumps({"length": length, **point}), flush=True)
            torch.cuda.empty_cache()
    res["break_even"] = break_even(res, "sparse_ms")
    res["break_even_fa3sparse"] = break_even(res, "fa3sparse_ms")
    return res


def line_fit(res: dict[str, Any], key: str, kind: str) -> tuple[float, float] | None:
    """Least-squares line ``time = intercept + slope * density`` through a sparse kernel's points of one mask kind."""
    pts = [(p["density"], p[key]) for p in res["points"] if p["kind"] == kind and key in p]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return slope, my - slope * mx


def break_even(res: dict[str, Any], key: str) -> dict[str, float | None]:
    """Per mask kind: the density where a sparse kernel's time (``key``) meets FA3's (line through the points)."""
    out: dict[str, float | None] = {}
    for kind in sorted({p["kind"] for p in res["points"]}):
        fit = line_fit(res, key, kind)
        out[kind] = (res["fa3_ms"] - fit[1]) / fit[0] if fit and fit[0] > 0 else None
    return out


def cost_model(res: dict[str, Any], key: str) -> str:
    """The same line read as (rate per computed block as a share of FA3's = FA3 ms / slope, fixed ms per call)."""
    parts = []
    for kind in sorted({p["kind"] for p in res["points"]}):
        fit = line_fit(res, key, kind)
        if fit and fit[0] > 0:
            parts.append(f"{kind} {100 * res['fa3_ms'] / fit[0]:.0f} % per block + {fit[1]:.2f} ms")
    return ", ".join(parts) or "n/a"


def sweep_best_gemm(path: Path, fp8: bool) -> tuple[bool, Any, str] | None:
    """The fastest S=16 library-GEMM variant on ``fp8`` (else bf16) operands of an ``xattn_est_sweep.py`` JSON (its
    longest length) whose selections at tau 0.9 changed by under 2 % and whose scores stay within 0.5 of the fused
    kernel's: (fp8, its EstimateTiles, its key), rebuilt from the ``variant`` the sweep records; None where none
    qualifies."""
    from attention_backend.kernels import EstimateTiles

    row = json.loads(path.read_text())["rows"][-1]
    ok = [(v["ms"], k) for k, v in row.items() if k.startswith("s16_gemm_") and "ms" in v and "variant" in v
          and v["variant"]["fp8"] == fp8
          and v["selection_changed_tau09"] < 0.02 and v["max_abs_diff"] < 0.5]  # fp8 measured 0.21 / 0.8 % (H100)
    if not ok:
        return None
    key = min(ok)[1]
    variant = row[key]["variant"]
    return variant["fp8"], EstimateTiles(**variant["tiles"]), key


def measure(args: argparse.Namespace) -> None:
    import torch

    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim, "block": BLOCK,
        "per_head_streams": list(args.per_head_streams),
        "rows": [],
    }  # fmt: skip
    for length in args.lens:
        result["rows"].append(run_length(length, args, flex))
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    render(result, Path(f"{args.out}.json"))


def render(result: dict[str, Any], json_path: Path) -> None:
    n_ph = result.get("per_head_streams", PER_HEAD_STREAMS)  # runs before the option: 1 and 4
    ph_keys = ("", f"_ph{n_ph[0]}", f"_ph{n_ph[-1]}", f"_ph{n_ph[-1]}_desc")
    """Print the table (markdown) and, where matplotlib is installed, write the PNG next to the JSON."""
    dev = result["device"]
    print(f"\n## {dev}: kernels at fixed densities (ms; ratios vs vLLM's FA3 in the same run)\n")
    for row in result["rows"]:
        fa3 = row["fa3_ms"]
        print(
            f"### {row['length']:,} tokens: FA3 {fa3:.1f} ms ({row['fa3_tflops']:.0f} TFLOP/s), "
            f"cuDNN {row.get('cudnn_ms', float('nan')):.1f} ms, estimation S=8 {row['est_s8_ms']:.1f} ms "
            f"({100 * row['est_s8_ms'] / fa3:.1f} % of FA3), S=16 {row['est_s16_ms']:.1f} ms "
            f"({100 * row['est_s16_ms'] / fa3:.1f} %), S=16 fp8 {row.get('est_s16_fp8_ms', float('nan')):.1f} ms "
            f"({100 * row.get('est_s16_fp8_ms', float('nan')) / fa3:.1f} %), S=16 library GEMM (FP8_GEMM_TILES) bf16 "
            f"{row.get('est_s16_gemm_ms', float('nan')):.1f} ms ({100 * row.get('est_s16_gemm_ms', float('nan')) / fa3:.1f} %), "
            f"fp8 {row.get('est_s16_gemm_fp8_ms', float('nan')):.1f} ms "
            f"({100 * row.get('est_s16_gemm_fp8_ms', float('nan')) / fa3:.1f} %, selections changed at tau 0.9: "
            f"{100 * row.get('est_s16_gemm_fp8_selection_changed_tau09', float('nan')):.2f} %), "
            + (f"the sweep's fastest ({row['est_s16_gemm_best_variant']}) {row.get('est_s16_gemm_best_ms', float('nan')):.2f} ms "
               f"({100 * row.get('est_s16_gemm_best_ms', float('nan')) / fa3:.1f} %), "
               if "est_s16_gemm_best_variant" in row else "")
            + (f"bf16: ({row['est_s16_gemm_best_bf16_variant']}) {row.get('est_s16_gemm_best_bf16_ms', float('nan')):.2f} ms "
               f"({100 * row.get('est_s16_gemm_best_bf16_ms', float('nan')) / fa3:.1f} %), "
               if "est_s16_gemm_best_bf16_variant" in row else "")
            + f"selection {row['select_ms']:.2f} ms; "
            "break-even density "
            + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in row["break_even"].items())
            + " (Triton); "
            + ", ".join(
                f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in row.get("break_even_fa3sparse", {}).items()
            )
            + " (FA3-paged)\n"
        )
        print("Line fit over the densities, time = fixed + density x per-block cost: Triton "
              + cost_model(row, "sparse_ms") + "; FA3-paged " + cost_model(row, "fa3sparse_ms")
              + "; FA3-paged with TMA pages " + cost_model(row, "fa3sparse_tma_ms")
              + f"; FA3-paged per head on {n_ph[-1]} streams, TMA pages "
              + cost_model(row, f"fa3sparse_ph{n_ph[-1]}_tma_ms") + " (break-even "
              + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a"
                          for k, v in break_even(row, f"fa3sparse_ph{n_ph[-1]}_tma_ms").items()) + ")"
              + "; the same, query blocks last first " + cost_model(row, f"fa3sparse_ph{n_ph[-1]}_desc_tma_ms")
              + " (break-even " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in
                                            break_even(row, f"fa3sparse_ph{n_ph[-1]}_desc_tma_ms").items())
              + ")\n")  # fmt: skip
        print(
            "| mask | density | Triton sparse ms | TFLOP/s (% of FA3) | FA3-paged sparse ms | TFLOP/s (% of FA3) "
            "| Flex ms | e2e S=16 ms (Triton / FA3-paged) | FA3 / e2e S=16 (Triton / FA3-paged) "
            f"| FA3-paged TMA ms: copies / per head x{n_ph[0]} / x{n_ph[-1]} streams / x{n_ph[-1]} last first (best % of FA3) "
            "| fastest e2e S=16: FA3 / e2e (parts) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for p in row["points"]:
            if "sparse_ms" not in p:
                print(f"| {p['kind']} | {p['target_density']} | error: {p.get('error', '')[:80]} |||||||")
                continue
            flex = f"{p['flex_ms']:.1f}" if "flex_ms" in p else "-"
            if "fa3sparse_ms" in p:
                f3 = (f"{p['fa3sparse_ms']:.1f} | {p['fa3sparse_tflops']:.0f} ({100 * p['fa3sparse_vs_fa3_tflops']:.0f} %)",
                      f" / {p['e2e_fa3sparse_s16_ms']:.1f}", f" / {p['e2e_fa3sparse_s16_speedup_vs_fa3']:.2f}x")
            else:
                f3 = ("- | -", "", "")
            ph = [p.get(f"fa3sparse{x}_tma_ms") for x in ph_keys]
            if all(x is not None for x in ph):
                pct = max(p.get(f"fa3sparse{x}_tma_vs_fa3_tflops", 0.0) for x in ph_keys[1:])
                pct = max(pct, p["fa3sparse_vs_fa3_tflops"] * p["fa3sparse_ms"] / ph[0])
                phs = " / ".join(f"{x:.1f}" for x in ph) + f" ({100 * pct:.0f} %)"
            else:
                phs = "-"
            best = (f"{p['e2e_best_s16_speedup_vs_fa3']:.2f}x ({' + '.join(p['e2e_best_s16_parts'])})"
                    if "e2e_best_s16_ms" in p else "-")
            print(
                f"| {p['kind']} | {p['density']:.3f} | {p['sparse_ms']:.1f} | {p['sparse_tflops']:.0f} "
                f"({100 * p['sparse_vs_fa3_tflops']:.0f} %) | {f3[0]} | {flex} | {p['e2e_s16_ms']:.1f}{f3[1]} | "
                f"{p['e2e_s16_speedup_vs_fa3']:.2f}x{f3[2]} | {phs} | {best} |"
            )
        print()
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib not installed: no PNG; run --render on the JSON elsewhere)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        for kind, style in (("random", "o-"), ("structured", "s-")):
            pts = [p for p in row["points"] if p["kind"] == kind and "sparse_ms" in p]
            ax.plot([p["density"] for p in pts], [p["e2e_s16_ms"] for p in pts], style, label=f"ours e2e S=16 Triton, {kind}")
            f3 = [p for p in pts if "e2e_fa3sparse_s16_ms" in p]
            if f3:
                ax.plot([p["density"] for p in f3], [p["e2e_fa3sparse_s16_ms"] for p in f3], style.replace("-", "--"),
                        label=f"ours e2e S=16 FA3-paged, {kind}")
            best = [p for p in pts if "e2e_best_s16_ms" in p]
            if best:  # the fastest estimate and the fastest fa3 form measured at each point (e2e_best_s16_parts)
                ax.plot([p["density"] for p in best], [p["e2e_best_s16_ms"] for p in best], style.replace("-", "-."),
                        label=f"ours e2e S=16, fastest parts, {kind}")
            flex = [p for p in pts if "flex_ms" in p]
            if flex:
                ax.plot([p["density"] for p in flex], [p["flex_ms"] for p in flex], style.replace("-", ":"),
                        label=f"Flex on the same blocks, {kind}", alpha=0.6)
        ax.axhline(row["fa3_ms"], color="k", label="vLLM FA3 (dense)")
        if "cudnn_ms" in row:
            ax.axhline(row["cudnn_ms"], color="gray", linestyle="--", label="cuDNN SDPA (dense)")
        ax.set_title(f"{row['length']:,} tokens")
        ax.set_xlabel("density (kept / causal blocks)")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        f"{result['device']}: attention time vs density ({result['heads']} q / {result['kv_heads']} kv heads, "
        f"d {result['head_dim']}, bf16)"
    )
    fig.tight_layout()
    png = json_path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", type=lambda s: [int(x) for x in s.split(",")], default=[32768, 65536, 131072])
    ap.add_argument("--densities", type=lambda s: [float(x) for x in s.split(",")], default=[0.05, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--kinds", type=lambda s: s.split(","), default=["random", "structured"])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--per-head-streams", type=lambda s: [int(x) for x in s.split(",")], default=list(PER_HEAD_STREAMS),
                    help="stream counts of the per-head fa3 calls, ascending; the last also runs last first")
    ap.add_argument("--gemm-from-sweep", type=Path,
                    help="xattn_est_sweep.py's JSON: also time its fastest library-GEMM estimate variant (S=16)")
    ap.add_argument("--out", help="output prefix (writes OUT.json)")
    ap.add_argument("--render", type=Path, help="re-print the table and write the PNG from a recorded JSON")
    args = ap.parse_args()
    if args.render:
        render(json.loads(args.render.read_text()), args.render)
        return
    if not args.out:
        sys.exit("--out is required when measuring")
    measure(args)


if __name__ == "__main__":
    main()
