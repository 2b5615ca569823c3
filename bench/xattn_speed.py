"""XAttention kernels vs the fastest dense attention on one GPU (attention only, causal, bf16).

For each length: cuDNN SDPA, the FlashAttention-2 SDPA backend, FlexAttention with the block mask our
selection produced, and our Triton XAttention (estimation, selection and sparse attention timed
separately and together) for each stride, with the density it reached and the attention recall on
sampled query rows (exact fp32 attention of those rows). Inputs: planted sink / vertical / slash
structure (``planted_qkv``), since no real model weights are available offline. CUDA events, warm-up,
median of several runs. Prints a table; writes ``<out>.json`` and ``<out>.png``.

``--taus`` takes numbers (one tau for every head) and ``cal``: per-head taus from the calibration of
``attention_backend.calibrate.calibrate_heads`` (smallest tau whose mean true-attention recall reaches
``--cal-target``), computed once per stride on a planted input of ``--cal-len`` tokens with a DIFFERENT
seed than the timed inputs, then applied unchanged at every length.

    python bench/xattn_speed.py --lens 8192,16384,32768,65536,131072 --out bench/results/xattn_kernels/xattn_speed
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from attention_backend.kernels import (
    AttnTiles,
    EstimateTiles,
    PagedKV,
    block_sparse_attention_indexed,
    estimate_block_scores,
    select_blocks_indexed,
    xattention_prefill,
)

BLOCK = 128
DEV = "cuda"  # the helpers below also run on CPU for a dry check (set DEV = "cpu")


def bench_ms(fn: Callable[[], Any], budget_ms: float = 1000.0, min_reps: int = 3, max_reps: int = 20) -> float:
    """Median CUDA-event time of ``fn`` after one warm-up run (plus one timed probe)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    probe = start.elapsed_time(end)
    reps = max(min_reps, min(max_reps, int(budget_ms / max(probe, 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def planted_qkv(length: int, hq: int, hkv: int, d: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random bf16 q/k/v with planted attention structure, ``[L, H, D]`` on CUDA.

    KV head ``g`` carries one pattern, cycling over: sink + local (RoPE-like slash at offset 0),
    vertical stripes (16-token runs at random positions), slash lines at offsets 1000 and 4097, and a
    mix of all. Its query heads pick the pattern up with strengths 1, 0.8, 0.6; the last query head
    has no structure (diffuse). Slash lines come from 16 rotation frequencies, so q.k depends on
    ``p - j - offset`` as with rotary embeddings.
    """
    gen = torch.Generator(device=DEV).manual_seed(seed)
    dev = DEV
    q = torch.randn(length, hq, d, device=dev, generator=gen)
    k = torch.randn(length, hkv, d, device=dev, generator=gen)
    v = torch.randn(length, hkv, d, device=dev, generator=gen)
    group = hq // hkv
    pos = torch.arange(length, device=dev, dtype=torch.float32)
    n_freq = 16
    theta = torch.exp(torch.linspace(0.0, math.log(1.0 / 2000.0), n_freq, device=dev))  # rad / token
    sdims = slice(0, 2 * n_freq)
    u = torch.randn(8, device=dev, generator=gen)
    u = 3.5 * u / u.norm()
    run = 16  # vertical stripes are runs of 16 key tokens (a phrase), 1 per 4096 tokens
    starts = torch.randperm(max(1, length // run), device=dev, generator=gen)[: max(2, length // 4096)] * run
    vert = (starts[:, None] + torch.arange(run, device=dev)[None, :]).flatten().clamp(max=length - 1)
    w = torch.randn(8, device=dev, generator=gen)
    w = 3.5 * w / w.norm()

    def rot(p: torch.Tensor) -> torch.Tensor:
        ang = p[:, None] * theta[None, :]
        return torch.cat([ang.cos(), ang.sin()], dim=1)  # [L, 2F]

    gamma = 3.0
    for g in range(hkv):
        kind = g % 4
        k[:, g, sdims] *= 0.2
        if kind in (0, 3):  # sink + local
            k[0, g, 32:40] += 12.0 * u
            offsets = [0]
        if kind in (1, 3):  # vertical columns
            k[vert, g, 40:48] += 8.0 * w
        if kind == 2:
            offsets = [1000, 4097]
        elif kind == 1:
            offsets = []
        for off in offsets:
            k[:, g, sdims] += gamma * rot(pos + off) / math.sqrt(len(offsets))
        for j in range(group):
            h = g * group + j
            if h == hq - 1:
                continue  # diffuse head
            strength = (1.0, 0.8, 0.6, 0.9)[j % 4]
            q[:, h, sdims] = q[:, h, sdims] * 0.2 + strength * gamma * rot(pos)
            if kind in (0, 3):
                q[:, h, 32:40] += strength * u
            if kind in (1, 3):
                q[:, h, 40:48] += strength * w
    return q.bfloat16(), k.bfloat16(), v.bfloat16()


def attention_recall(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor, n_rows: int, seed: int
) -> tuple[float, float]:
    """Mean and worst share of the exact causal attention mass inside the kept blocks, over
    ``n_rows`` random query positions of every head."""
    length, hq, d = q.shape
    group = hq // k.shape[1]
    gen = torch.Generator(device=DEV).manual_seed(seed)
    rows = torch.randint(BLOCK, length, (n_rows,), device=DEV, generator=gen)
    n_kb = mask.shape[-1]
    recalls = []
    keys = torch.arange(length, device=DEV)
    for h in range(hq):
        logits = (q[rows, h].float() @ k[:, h // group].float().T) * d**-0.5
        logits.masked_fill_(keys[None, :] > rows[:, None], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        probs = F.pad(probs, (0, n_kb * BLOCK - length)).view(n_rows, n_kb, BLOCK).sum(-1)
        kept = mask[h, rows // BLOCK].float()
        recalls.append((probs * kept).sum(-1))
    rec = torch.cat(recalls)
    return float(rec.mean()), float(rec.min())


def computed_pairs(count: torch.Tensor, length: int) -> float:
    """Query-key pairs the sparse kernel computes: B*B per kept off-diagonal block, B(B+1)/2 diagonal."""
    n_rows = float(count.sum())
    n_diag = count.shape[0] * count.shape[1]
    return (n_rows - n_diag) * BLOCK * BLOCK + n_diag * BLOCK * (BLOCK + 1) / 2


def configs(args: argparse.Namespace) -> list[tuple[int, float | str]]:
    return [(s, t) for s in args.strides for t in args.taus]


def config_tag(stride: int, tau: float | str) -> str:
    return f"s{stride}_{tau}" if isinstance(tau, str) else f"s{stride}_t{tau:g}"


def threshold_of(args: argparse.Namespace, stride: int, tau: float | str) -> float | torch.Tensor:
    return args.cal_taus[stride] if tau == "cal" else tau


def calibrate_taus(args: argparse.Namespace) -> dict[str, Any]:
    """Per-head tau per stride on a held-out planted input (seed differs from every timed input)."""
    from attention_backend.calibrate import calibrate_heads, true_block_mass

    q, k, _ = planted_qkv(args.cal_len, args.heads, args.kv_heads, args.head_dim, seed=424242)
    mass = true_block_mass(q, k, block_size=BLOCK, chunk_tokens=512)
    kv = PagedKV.from_contiguous(k, k)
    info: dict[str, Any] = {"length": args.cal_len, "target": args.cal_target, "seed": 424242}
    for stride in args.strides:
        scores = estimate_block_scores(q, kv, block_size=BLOCK, stride=stride)
        taus = calibrate_heads(scores, mass, block_size=BLOCK, q_offset=0, target=args.cal_target, tol=2e-3)
        args.cal_taus[stride] = taus.to(device=DEV, dtype=torch.float32)
        info[f"s{stride}_taus"] = [round(float(t), 4) for t in taus]
    del mass
    torch.cuda.empty_cache()
    print(json.dumps({"calibration": info}), flush=True)
    return info


def run_length(length: int, args: argparse.Namespace, flex: Any) -> dict[str, Any]:
    hq, hkv, d = args.heads, args.kv_heads, args.head_dim
    q, k, v = planted_qkv(length, hq, hkv, d, seed=length)
    res: dict[str, Any] = {"length": length, "dense_flops": 4.0 * d * hq * length * (length + 1) / 2}
    group = hq // hkv
    qt = q.transpose(0, 1).unsqueeze(0)
    kt_rep = k.repeat_interleave(group, 1).transpose(0, 1).unsqueeze(0)
    vt_rep = v.repeat_interleave(group, 1).transpose(0, 1).unsqueeze(0)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("fa2_sdpa", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                dense = functools.partial(F.scaled_dot_product_attention, qt, kt_rep, vt_rep, is_causal=True)
                res[f"{name}_ms"] = bench_ms(dense)
        except Exception as exc:  # a baseline that cannot run is reported, not hidden
            res[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    del kt_rep, vt_rep
    torch.cuda.empty_cache()
    kv = PagedKV.from_contiguous(k, v)
    for stride, tau in configs(args):
        tag = config_tag(stride, tau)
        try:
            et, at = args.est_tiles.get(stride, EstimateTiles()), args.attn_tiles
            tau = threshold_of(args, stride, tau)
            scores = estimate_block_scores(q, kv, block_size=BLOCK, stride=stride, tiles=et)
            mask, idx, count = select_blocks_indexed(scores, tau, first_qb=0)
            out = torch.empty_like(q)
            res[f"{tag}_est_ms"] = bench_ms(
                functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=stride, out=scores, tiles=et)
            )
            res[f"{tag}_sel_ms"] = bench_ms(functools.partial(select_blocks_indexed, scores, tau, first_qb=0))
            res[f"{tag}_attn_ms"] = bench_ms(
                functools.partial(block_sparse_attention_indexed, q, kv, idx, count, block_size=BLOCK, out=out, tiles=at)
            )
            res[f"{tag}_total_ms"] = bench_ms(
                functools.partial(
                    xattention_prefill, q, kv, block_size=BLOCK, stride=stride, threshold=tau, out=out,
                    est_tiles=et, attn_tiles=at,
                )
            )
            n_kb = mask.shape[-1]
            causal_blocks = hq * n_kb * (n_kb + 1) / 2
            res[f"{tag}_density"] = float(mask.sum()) / causal_blocks
            pairs = computed_pairs(count, length)
            res[f"{tag}_attn_tflops"] = 4.0 * d * pairs / (res[f"{tag}_attn_ms"] * 1e-3) / 1e12
            mean, worst = attention_recall(q, k, mask, args.recall_rows, seed=stride)
            res[f"{tag}_recall_mean"], res[f"{tag}_recall_min"] = mean, worst
            if flex is not None and tag == config_tag(*configs(args)[0]):
                res.update(run_flex(flex, q, k, v, mask, idx, count, length))
            del scores, out
        except Exception as exc:
            res[f"{tag}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            traceback.print_exc()
        torch.cuda.empty_cache()
    if "cudnn_ms" in res:
        cud = res["cudnn_ms"]
        res["cudnn_tflops"] = res["dense_flops"] / (cud * 1e-3) / 1e12
        for key in list(res):
            if key.endswith("_ms") and key != "cudnn_ms":
                res[key.replace("_ms", "_speedup_vs_cudnn")] = cud / res[key]
    return res


def run_flex(flex: Any, q, k, v, mask, idx, count, length: int) -> dict[str, Any]:
    """FlexAttention (compiled) over the same kept blocks: off-diagonal blocks as full blocks, the
    diagonal as a causal partial block, GQA native."""
    from torch.nn.attention.flex_attention import BlockMask

    hq, n_qb, n_kb = mask.shape
    diag = torch.arange(n_qb, device=mask.device)
    off = mask.clone()
    off[:, diag, diag] = False
    ar = torch.arange(n_kb, device=mask.device, dtype=torch.int32)
    full_idx = torch.sort(torch.where(off, ar, n_kb + ar), dim=-1).values.to(torch.int32)
    full_cnt = off.sum(-1, dtype=torch.int32)
    part_idx = torch.zeros(hq, n_qb, n_kb, dtype=torch.int32, device=mask.device)
    part_idx[:, :, 0] = diag.to(torch.int32)
    part_cnt = torch.ones(hq, n_qb, dtype=torch.int32, device=mask.device)

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    bm = BlockMask.from_kv_blocks(
        part_cnt[None], part_idx[None], full_cnt[None], full_idx[None], BLOCK_SIZE=BLOCK, mask_mod=causal,
        seq_lengths=(length, length), compute_q_blocks=False,
    )
    qt, kt, vt = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    t0 = time.time()
    flex(qt, kt, vt, block_mask=bm, enable_gqa=True)
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    run = functools.partial(flex, qt, kt, vt, block_mask=bm, enable_gqa=True)
    return {"flex_ms": bench_ms(run), "flex_compile_s": compile_s}


def ceilings() -> dict[str, float]:
    """Measured copy bandwidth (read + write) and bf16 matmul rate on this card."""
    x = torch.empty(2 * 1024**3 // 2, dtype=torch.bfloat16, device="cuda").normal_()
    y = torch.empty_like(x)
    copy_ms = bench_ms(lambda: y.copy_(x), budget_ms=300)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = bench_ms(lambda: a @ b, budget_ms=300)
    return {
        "copy_tb_s": 2 * x.numel() * 2 / (copy_ms * 1e-3) / 1e12,
        "bf16_matmul_tflops": 2 * 8192**3 / (mm_ms * 1e-3) / 1e12,
    }


def sweep_tiles(length: int, args: argparse.Namespace) -> dict[str, Any]:
    """Time estimation launch shapes per stride and sparse-attention launch shapes (on the first
    config's mask) at one length; ``args.est_tiles`` / ``args.attn_tiles`` get the fastest."""
    q, k, v = planted_qkv(length, args.heads, args.kv_heads, args.head_dim, seed=1)
    kv = PagedKV.from_contiguous(k, v)
    out: dict[str, Any] = {"length": length}
    for stride in args.strides:
        if stride in args.est_tiles:  # given by --est-tiles-json
            continue
        best = (float("inf"), EstimateTiles())
        for bm, bn, warps, stages in ((128, 256, 8, 3), (128, 256, 8, 4), (128, 128, 8, 3), (128, 128, 8, 4), (64, 256, 4, 3)):
            tiles = EstimateTiles(bm, bn, warps, stages)
            key = f"est_s{stride}_bm{bm}_bn{bn}_w{warps}_st{stages}"
            try:
                out[key] = bench_ms(functools.partial(estimate_block_scores, q, kv, block_size=BLOCK, stride=stride, tiles=tiles))
                best = min(best, (out[key], tiles), key=lambda x: x[0])
            except Exception as exc:
                out[key] = f"{type(exc).__name__}: {exc}"[:200]
        args.est_tiles[stride] = best[1]
    stride, tau = configs(args)[0]
    scores = estimate_block_scores(q, kv, block_size=BLOCK, stride=stride, tiles=args.est_tiles[stride])
    _, idx, count = select_blocks_indexed(scores, threshold_of(args, stride, tau), first_qb=0)
    o = torch.empty_like(q)
    best_a = (float("inf"), AttnTiles())
    for warps, stages in ((8, 3), (8, 2), (4, 3), (8, 4), (4, 2)):
        tiles = AttnTiles(warps, stages)
        key = f"attn_w{warps}_st{stages}"
        try:
            out[key] = bench_ms(
                functools.partial(block_sparse_attention_indexed, q, kv, idx, count, block_size=BLOCK, out=o, tiles=tiles)
            )
            best_a = min(best_a, (out[key], tiles), key=lambda x: x[0])
        except Exception as exc:
            out[key] = f"{type(exc).__name__}: {exc}"[:200]
    args.attn_tiles = best_a[1]
    out["chosen"] = {"est": {s_: vars(t) for s_, t in args.est_tiles.items()}, "attn": vars(args.attn_tiles)}
    print(json.dumps(out, default=str), flush=True)
    return out


def print_table(rows: list[dict[str, Any]], cfgs: list[tuple[int, float]]) -> None:
    nan = float("nan")
    print(f"{'L':>7} {'cuDNN':>8} {'FA2':>8} {'flex':>8} {'S':>3} {'tau':>5} {'est':>7} {'sel':>6} {'attn':>7}"
          f" {'total':>7} {'xcuDNN':>6} {'est%':>5} {'dens':>5} {'rec':>5} {'recmin':>6} {'TF/s':>5} {'%cuDNN':>6}")
    for r in rows:
        for stride, tau in cfgs:
            t = config_tag(stride, tau)
            cud = r.get("cudnn_ms", nan)
            tf_ratio = r.get(t + "_attn_tflops", nan) / r.get("cudnn_tflops", nan)
            print(
                f"{r['length']:>7} {cud:>8.2f} {r.get('fa2_sdpa_ms', nan):>8.2f} {r.get('flex_ms', nan):>8.2f}"
                f" {stride:>3} {str(tau):>5} {r.get(t + '_est_ms', nan):>7.2f} {r.get(t + '_sel_ms', nan):>6.2f}"
                f" {r.get(t + '_attn_ms', nan):>7.2f} {r.get(t + '_total_ms', nan):>7.2f}"
                f" {r.get(t + '_total_speedup_vs_cudnn', nan):>6.2f} {100 * r.get(t + '_est_ms', nan) / cud:>5.1f}"
                f" {r.get(t + '_density', nan):>5.3f} {r.get(t + '_recall_mean', nan):>5.3f}"
                f" {r.get(t + '_recall_min', nan):>6.3f} {r.get(t + '_attn_tflops', nan):>5.0f} {100 * tf_ratio:>6.1f}"
            )


def plot(rows: list[dict[str, Any]], cfgs: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lens = [r["length"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    first = config_tag(*cfgs[0])
    series = [("cudnn_ms", "cuDNN SDPA"), ("fa2_sdpa_ms", "FA2 SDPA"), ("flex_ms", f"Flex ({first} mask)")]
    series += [(f"{config_tag(*c)}_total_ms", f"XAttention {config_tag(*c)}") for c in cfgs]
    series += [(f"{config_tag(*c)}_est_ms", f"  estimation {config_tag(*c)}") for c in cfgs if c[1] == cfgs[0][1]]
    for key, label in series:
        pts = [(r["length"], r[key]) for r in rows if key in r]
        if pts:
            ax1.plot(*zip(*pts, strict=False), marker="o", label=label, linestyle="--" if "estimation" in label else "-")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("tokens")
    ax1.set_ylabel("ms (median)")
    ax1.set_title("attention time, 32 q / 8 kv heads, D=128, bf16, causal")
    ax1.legend(fontsize=7)
    for c in cfgs:
        t = config_tag(*c)
        pts = [(r["length"], r[f"{t}_total_speedup_vs_cudnn"]) for r in rows if f"{t}_total_speedup_vs_cudnn" in r]
        if pts:
            ax2.plot(*zip(*pts, strict=False), marker="o", label=f"speedup vs cuDNN, {t}")
        pts = [(r["length"], r[f"{t}_density"] * 10) for r in rows if f"{t}_density" in r]
        if pts:
            ax2.plot(*zip(*pts, strict=False), marker="x", linestyle=":", label=f"density x10, {t}")
    ax2.axhline(6.0, color="gray", linewidth=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("tokens")
    ax2.set_title(f"XAttention vs cuDNN ({lens[0]}..{lens[-1]} tokens)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="8192,16384,32768,65536,131072")
    ap.add_argument("--strides", default="8,16")
    ap.add_argument("--taus", default="0.9,0.95,cal", help="numbers and/or 'cal' (per-head calibrated)")
    ap.add_argument("--cal-target", type=float, default=0.95, help="recall target of the 'cal' taus")
    ap.add_argument("--cal-len", type=int, default=32768, help="length of the held-out calibration input")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--recall-rows", type=int, default=64)
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--sweep-len", type=int, default=32768, help="launch-shape sweep at this length (0: off)")
    ap.add_argument("--est-tiles-json", help="estimation launch shapes per stride (`best` of xattn_est_sweep.py): skips the est sweep")
    ap.add_argument("--out", default="bench/results/xattn_kernels/xattn_speed")
    args = ap.parse_args()
    args.strides = [int(s) for s in args.strides.split(",")]
    args.taus = [t if t == "cal" else float(t) for t in args.taus.split(",")]
    if not torch.cuda.is_available():
        raise SystemExit("xattn_speed needs a CUDA GPU")
    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
    meta = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "taus": args.taus,
        "sweep_note": "est/attn launch shapes are timed at --sweep-len; the fastest are used for every length",
        "heads": args.heads,
        "kv_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "block": BLOCK,
        "inputs": "planted sink/vertical/slash structure (bench/xattn_speed.py:planted_qkv), bf16",
        "dense_baselines_kv": "K/V repeated to 32 heads for the SDPA backends; Flex and ours read 8 KV heads",
        "timing": "CUDA events, 1 warm-up + 1 probe, median of 3-20 runs",
    }
    import triton

    meta["triton"] = triton.__version__
    meta.update(ceilings())
    args.est_tiles, args.attn_tiles, args.cal_taus = {}, AttnTiles(), {}
    if args.est_tiles_json:
        best = json.loads(Path(args.est_tiles_json).read_text())["best"]
        args.est_tiles = {int(s_): EstimateTiles(**t) for s_, t in best.items()}
        meta["est_tiles_from"] = {"file": args.est_tiles_json, "tiles": best}
    if "cal" in args.taus:
        meta["calibration"] = calibrate_taus(args)
    if args.sweep_len:
        meta["tile_sweep_ms"] = sweep_tiles(args.sweep_len, args)
    print(json.dumps(meta), flush=True)
    rows = []
    for length in (int(x) for x in args.lens.split(",")):
        t0 = time.time()
        row = run_length(length, args, flex)
        row["wall_s"] = time.time() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print_table(rows, configs(args))
    plot(rows, configs(args), out.with_suffix(".png"))


if __name__ == "__main__":
    main()
