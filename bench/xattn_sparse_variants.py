"""Sparse attention kernel variants against vLLM's FlashAttention 3 (one GPU, bf16, causal, block 128).

For each length (default 128K, 64K, 32K: the longest first, so a run cut short still has it) and density
(default 0.05, 0.1, 0.2, 0.5; ``random`` block masks of ``bench/xattn_curve.py``: sink and diagonal
always kept) it times every variant of ``AttnTiles`` below on the same kept blocks and reports TFLOP/s on
the computed blocks (diagonal blocks as half) and the percentage of FA3's TFLOP/s measured in the same
run (``flash_attn_varlen_func``, ``fa_version=3``, GQA native, dense causal). Each variant's output is
compared with the pointer kernel's (max abs difference; NaN counts as a failure). At the first length it
repeats two densities on vLLM's FLASH_ATTN cache layout (pages of 128 tokens shuffled in a pool, K and V
strided views of one ``[pages, Hkv, page, 2D]`` tensor), the layout the adapter hands the kernel. Last, a
chunk check where the timings do not look (q_offset not on a block, NaN past the sequence).

    python3 bench/xattn_sparse_variants.py --out $OUT/xattn_sparse_variants        # on the GPU: JSON + table
    python3 bench/xattn_sparse_variants.py --render A.json [B.json] --png out.png    # merged table + plot

Device command: ``bench/h200/sparse_variants.sh``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BLOCK = 128
# name -> AttnTiles fields; "pointer" is the kernel before this bench (the fallback), the rest the TMA one.
# Shared memory, registers and spills of each: bench/xattn_sparse_aot.py (no GPU needed).
VARIANTS: dict[str, dict[str, Any]] = {
    "pointer": {},
    "tma-s2": dict(kernel="tma", num_stages=2),
    "tma-s3": dict(kernel="tma", num_stages=3),
    "tma-bn64-s3": dict(kernel="tma", bn=64, num_stages=3),
    "tma-qka-s3": dict(kernel="tma", num_stages=3, qk_ahead=True),
    "tma-ws-w4-s2": dict(kernel="tma", num_warps=4, num_stages=2, warp_specialize=True),
    "tma-ws-bn64-w4-s3": dict(kernel="tma", bn=64, num_warps=4, num_stages=3, warp_specialize=True),
    # launch shapes for small head dims (SmolLM2's d 64): four warps, deeper pipelines
    "pointer-w4-s3": dict(num_warps=4, num_stages=3),
    "tma-s4": dict(kernel="tma", num_stages=4),
    "tma-w4-s3": dict(kernel="tma", num_warps=4, num_stages=3),
    "tma-w4-s4": dict(kernel="tma", num_warps=4, num_stages=4),
    "tma-bn64-w4-s4": dict(kernel="tma", bn=64, num_warps=4, num_stages=4),
    "tma-qka-w4-s3": dict(kernel="tma", num_warps=4, num_stages=3, qk_ahead=True),
}


def vllm_paged(k: Any, v: Any, page: int, gen: Any) -> Any:
    """``k, v: [L, Hkv, D]`` scattered into a shuffled pool laid out as vLLM's FLASH_ATTN cache."""
    import torch

    from attention_backend.kernels import PagedKV

    length, hkv, d = k.shape
    n_pages = -(-length // page)
    pool = n_pages + 8
    perm = torch.randperm(pool, device=k.device, generator=gen)[:n_pages]
    cache = torch.full((pool, hkv, page, 2 * d), float("nan"), dtype=k.dtype, device=k.device)
    pad = n_pages * page - length
    for j, t in enumerate((k, v)):
        tp = torch.nn.functional.pad(t, (0, 0, 0, 0, 0, pad)).view(n_pages, page, hkv, d).transpose(1, 2)
        cache[perm, :, :, j * d : (j + 1) * d] = tp
    if pad:  # slots past the sequence hold garbage in vLLM's cache: NaN here, so a kernel that uses them shows
        cache[perm[-1], :, page - pad :] = float("nan")
    key_cache, value_cache = cache.transpose(1, 2).split(d, dim=-1)
    return PagedKV(key_cache, value_cache, perm.to(torch.int32), length)


def time_variants(q: Any, kv: Any, idx: Any, count: Any, length: int, fa3_tflops: float | None, args) -> dict:
    """Every variant on one (kv, idx, count): ms, TFLOP/s on the computed blocks, % of FA3, diff vs pointer."""
    import torch
    from xattn_speed import bench_ms, computed_pairs

    from attention_backend.kernels import AttnTiles, block_sparse_attention_indexed

    flops = 4.0 * q.shape[2] * computed_pairs(count, length)
    ref = None
    res: dict[str, Any] = {}
    for name in args.variants:
        r: dict[str, Any] = {}
        try:
            out = torch.empty_like(q)
            run = functools.partial(
                block_sparse_attention_indexed, q, kv, idx, count, block_size=BLOCK, out=out,
                tiles=AttnTiles(**VARIANTS[name]),
            )
            t0 = time.time()
            run()
            torch.cuda.synchronize()
            r["first_call_s"] = time.time() - t0  # compile included on the first point
            if ref is None:
                ref = out.clone()
            r["max_abs_diff_vs_pointer"] = float((out.float() - ref.float()).abs().max())
            r["ms"] = bench_ms(run, budget_ms=args.budget_ms)
            r["tflops"] = flops / (r["ms"] * 1e-3) / 1e12
            if fa3_tflops:
                r["pct_fa3"] = 100.0 * r["tflops"] / fa3_tflops
        except Exception as exc:  # a variant that does not compile or run is reported, not hidden
            r["error"] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
        res[name] = r
    return res


def check_odd_chunk(args: argparse.Namespace) -> dict[str, Any]:
    """Correctness on the GPU where the timings do not look: a chunk (q_offset 1333) of a 4001-token context
    in vLLM's layout with NaN past the sequence, density ~0.3; every variant against the pointer kernel."""
    import torch
    from xattn_curve import block_mask

    from attention_backend.kernels import AttnTiles, block_sparse_attention_indexed, mask_to_index

    k_len, off, hq, hkv, d = 4001, 1333, 8, 2, args.head_dim  # GQA 4 as in the timings: the same kernels
    gen = torch.Generator(device="cuda").manual_seed(7)
    q, k, v = (torch.randn(n, h, d, device="cuda", generator=gen, dtype=torch.bfloat16)
               for n, h in ((k_len - off, hq), (k_len, hkv), (k_len, hkv)))  # fmt: skip
    kv = vllm_paged(k, v, 128, gen)
    first, n_kb = off // BLOCK, -(-k_len // BLOCK)
    idx, count = mask_to_index(block_mask("random", 0.3, hq, n_kb, gen)[:, first:], first_qb=first)
    res: dict[str, Any] = {}
    ref = None
    for name in args.variants:
        try:
            out = block_sparse_attention_indexed(
                q, kv, idx, count, block_size=BLOCK, q_offset=off, tiles=AttnTiles(**VARIANTS[name])
            )
            ref = out if ref is None else ref
            res[name] = {"finite": bool(torch.isfinite(out).all()), "max_abs_diff_vs_pointer": float(
                (out.float() - ref.float()).abs().max())}  # fmt: skip
        except Exception as exc:
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            traceback.print_exc()
    print(json.dumps({"odd_chunk_check": res}), flush=True)
    return res


def run_length(length: int, args: argparse.Namespace, first: bool) -> dict[str, Any]:
    import torch
    from xattn_curve import block_mask, fa3_fn
    from xattn_speed import bench_ms

    from attention_backend.kernels import PagedKV, mask_to_index

    hq, hkv, d = args.heads, args.kv_heads, args.head_dim
    gen = torch.Generator(device="cuda").manual_seed(length)
    q, k, v = (torch.randn(length, h, d, device="cuda", generator=gen, dtype=torch.bfloat16) for h in (hq, hkv, hkv))
    row: dict[str, Any] = {"length": length, "points": []}
    try:
        row["fa3_ms"] = bench_ms(fa3_fn(q, k, v), budget_ms=args.budget_ms)
        row["fa3_tflops"] = 4.0 * d * hq * length * (length + 1) / 2 / (row["fa3_ms"] * 1e-3) / 1e12
    except Exception as exc:
        row["fa3_error"] = f"{type(exc).__name__}: {exc}"[:400]
        traceback.print_exc()
    n_qb = -(-length // BLOCK)
    layouts = [("contiguous", PagedKV.from_contiguous(k, v), args.densities)]
    if first:
        layouts.append(("vllm_page128", vllm_paged(k, v, 128, gen), args.paged_densities))
    for layout, kv, densities in layouts:
        for density in densities:
            mask = block_mask("random", density, hq, n_qb, gen)
            idx, count = mask_to_index(mask)
            del mask
            point = {
                "layout": layout, "target_density": density,
                "density": float(count.sum()) / (hq * n_qb * (n_qb + 1) / 2),
                "variants": time_variants(q, kv, idx, count, length, row.get("fa3_tflops"), args),
            }  # fmt: skip
            row["points"].append(point)
            print(json.dumps({"length": length, **point}), flush=True)
            del idx, count
            torch.cuda.empty_cache()
    return row


def _check_cell(r: dict[str, Any]) -> str:
    if "finite" not in r:
        return f"error {r.get('error', '')[:60]}"
    return f"diff vs pointer {r['max_abs_diff_vs_pointer']:.1e}" + ("" if r["finite"] else " NOT FINITE")


def render(result: dict[str, Any]) -> None:
    print(f"\n## {result['device']} (sm_{result['capability']}), Triton {result['triton']}: sparse kernel variants\n")
    names = result["variants"]
    checks = [f"{n} {_check_cell(r)}" for n, r in result.get("odd_chunk_check", {}).items()]
    print("Chunk check (4001 tokens, q_offset 1333, vLLM layout, NaN past the sequence): " + ", ".join(checks) + "\n")
    for row in result["rows"]:
        fa3 = f"FA3 {row['fa3_ms']:.1f} ms = {row['fa3_tflops']:.0f} TFLOP/s" if "fa3_ms" in row else row.get("fa3_error")
        print(f"### {row['length']:,} tokens: {fa3}\n")
        print("| layout | density | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for p in row["points"]:
            cells = []
            for n in names:
                r = p["variants"].get(n, {})
                if "ms" not in r:
                    cells.append(f"error: {r.get('error', 'not run')[:60]}")
                    continue
                pct = f", {r['pct_fa3']:.0f} %" if "pct_fa3" in r else ""
                cells.append(f"{r['ms']:.1f} ms, {r['tflops']:.0f} TF{pct}, diff {r['max_abs_diff_vs_pointer']:.1e}")
            print(f"| {p['layout']} | {p['density']:.3f} | " + " | ".join(cells) + " |")
        print()


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of the same lengths and densities with different variants (the first run's
    FA3 and pointer figures are kept; later runs add their other variants)."""
    out = json.loads(json.dumps(results[0]))
    for extra in results[1:]:
        out["variants"] += [n for n in extra["variants"] if n not in out["variants"]]
        out.setdefault("odd_chunk_check", {}).update(
            {n: r for n, r in extra.get("odd_chunk_check", {}).items() if n not in out["odd_chunk_check"]}
        )
        rows = {r["length"]: r for r in out["rows"]}
        for row in extra["rows"]:
            if row["length"] not in rows:
                out["rows"].append(row)
                continue
            points = {(p["layout"], p["target_density"]): p for p in rows[row["length"]]["points"]}
            for p in row["points"]:
                mine = points.get((p["layout"], p["target_density"]))
                if mine is None:
                    rows[row["length"]]["points"].append(p)
                else:
                    mine["variants"].update({n: r for n, r in p["variants"].items() if n not in mine["variants"]})
    return out


def plot(result: dict[str, Any], png: Path) -> None:
    """% of FA3's TFLOP/s against density, one panel per length (contiguous layout), one line per variant."""
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib not installed: no PNG)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        pts = sorted((p for p in row["points"] if p["layout"] == "contiguous"), key=lambda p: p["density"])
        for name in result["variants"]:
            xy = [(p["density"], p["variants"][name]["pct_fa3"]) for p in pts if "pct_fa3" in p["variants"].get(name, {})]
            if xy:
                ax.plot(*zip(*xy, strict=True), "o-", label=name, linewidth=2.5 if name == "pointer" else 1.5)
        ax.axhline(90, color="k", linestyle="--", label="target 90 % of FA3")
        ax.set_title(f"{row['length']:,} tokens")
        ax.set_xlabel("density (kept / causal blocks)")
        ax.set_ylabel("% of FA3 TFLOP/s (computed blocks)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result['device']}: sparse kernel variants vs FA3 (32 q / 8 kv heads, d 128, bf16)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def measure(args: argparse.Namespace) -> None:
    import torch
    import triton

    cap = torch.cuda.get_device_capability()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(), "capability": f"{cap[0]}{cap[1]}", "torch": torch.__version__,
        "triton": triton.__version__, "heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim,
        "block": BLOCK, "variants": args.variants, "tiles": {n: VARIANTS[n] for n in args.variants}, "rows": [],
    }  # fmt: skip
    t0 = time.time()
    for i, length in enumerate(args.lens):
        result["rows"].append(run_length(length, args, first=i == 0))
        result["elapsed_s"] = time.time() - t0
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    result["odd_chunk_check"] = check_odd_chunk(args)  # last: a fault there must not lose the timings
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
    render(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", type=lambda s: [int(x) for x in s.split(",")], default=[131072, 65536, 32768])
    ap.add_argument("--densities", type=lambda s: [float(x) for x in s.split(",")], default=[0.05, 0.1, 0.2, 0.5])
    ap.add_argument("--paged-densities", type=lambda s: [float(x) for x in s.split(",")], default=[0.1, 0.5])
    ap.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS), help="pointer first")
    ap.add_argument("--budget-ms", type=float, default=500.0, help="timing budget per measurement")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--out", help="output prefix (writes OUT.json)")
    ap.add_argument("--render", type=Path, nargs="+", help="re-print the table from recorded JSON(s), merged")
    ap.add_argument("--png", type=Path, help="with --render: write the plot here")
    args = ap.parse_args()
    if args.render:
        result = merge([json.loads(p.read_text()) for p in args.render])
        render(result)
        if args.png:
            plot(result, args.png)
        return
    unknown = [n for n in args.variants if n not in VARIANTS]
    if unknown or args.variants[0] != "pointer":
        sys.exit(f"--variants: the first must be pointer (the reference), all of {list(VARIANTS)}; got {args.variants}")
    if not args.out:
        sys.exit("--out is required when measuring")
    measure(args)


if __name__ == "__main__":
    main()
