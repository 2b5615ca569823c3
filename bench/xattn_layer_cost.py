"""What one attention layer of one chunked-prefill step costs, piece by piece: GPU time and host time per call.

Inside vLLM a step runs each layer's attention once; the XAttention path is several launches (estimate,
select, the sparse kernel, vLLM's FlashAttention for the rows that stay dense), each with Python on the host
in front of it. When the host time of a layer is above its GPU time, the GPU waits (what a torch profile of
a real model shows as GPU time well under the TTFT). This times the pieces apart, in the shapes of the
packaged models, so the waiting can be attributed:

- a vLLM FLASH_ATTN paged cache (128-token pages, NHD) holding ``--ctx`` tokens of random bf16 K/V, the chunk
  = its last ``--chunk`` tokens (chunked prefill), query heads / KV heads / head dim from ``--shape``;
- ``fa3``: vLLM's ``flash_attn_varlen_func`` on the chunk (``fa_version=3``, the block table, causal), as
  FLASH_ATTN calls it; ``fa3_no_keys``: the same call with ``seqused_k = 0`` (what a row decided sparse on
  the device costs FlashAttention);
- ``select``: ``kernels.paged_select`` (estimate S=16 + selection) at ``--tau``; ``sparse_fa3``:
  ``attention_backend.vllm.fa3_sparse.fa3_attend`` over that selection; ``sparse_triton``: ``kernels.paged_attend``;
- per piece, over ``--reps`` calls after two warm-ups: GPU ms per call (CUDA events around all calls) and
  host ms per call (wall time of the launches alone, with the GPU kept busy by a long spin kernel so no
  launch waits: the Python and launch cost the host pays before the GPU can go on).

    python3 bench/xattn_layer_cost.py --shape gemma --chunk 16384 --ctx 32768 --out $OUT/layer_cost.json
    python3 bench/xattn_layer_cost.py --render bench/results/xattn_real/layer_cost/layer_cost.json   # anywhere

Random inputs give near-uniform attention: ``--tau`` sets the kept share (density ~ tau), not real sparsity.
Exact device commands: ``bench/h200/layer_cost.sh``; results: ``bench/results/xattn_real/layer_cost/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

SHAPES = {"smol": (9, 3, 64), "gemma": (4, 1, 256), "llama": (32, 8, 128)}
PAGE = 128


def _inputs(shape: str, chunk: int, ctx: int) -> dict[str, Any]:
    import torch

    from attention_backend.kernels import PrefillSeq

    hq, hkv, d = SHAPES[shape]
    g = torch.Generator(device="cuda").manual_seed(0)
    n_pages = -(-ctx // PAGE) + 2
    cache = torch.randn((n_pages, 2, PAGE, hkv, d), device="cuda", dtype=torch.bfloat16, generator=g)
    key_cache, value_cache = cache[:, 0], cache[:, 1]  # [pages, page, Hkv, D] each
    perm = torch.randperm(n_pages, device="cuda", generator=g)
    table = perm[: -(-ctx // PAGE)].int()[None]
    q = torch.randn((chunk, hq, d), device="cuda", dtype=torch.bfloat16, generator=g)
    seq = PrefillSeq(row=0, q_start=0, q_len=chunk, k_len=ctx)
    return {"q": q, "kc": key_cache, "vc": value_cache, "table": table, "seq": seq, "scale": d**-0.5}


def _pieces(x: dict[str, Any], tau: float) -> dict[str, Any]:
    import torch
    from vllm.vllm_flash_attn import flash_attn_varlen_func

    from attention_backend import kernels
    from attention_backend.vllm.fa3_sparse import fa3_attend

    q, kc, vc, table, seq, scale = x["q"], x["kc"], x["vc"], x["table"], x["seq"], x["scale"]
    dev = q.device
    cu_q = torch.tensor([0, seq.q_len], dtype=torch.int32, device=dev)
    used = torch.tensor([seq.k_len], dtype=torch.int32, device=dev)
    none = torch.zeros(1, dtype=torch.int32, device=dev)
    out = torch.empty_like(q)
    sel = kernels.paged_select(q, kc, vc, table, [seq], block_size=128, stride=16, threshold=tau, scale=scale)

    def fa3(seqused: torch.Tensor) -> None:
        flash_attn_varlen_func(q, kc, vc, max_seqlen_q=seq.q_len, cu_seqlens_q=cu_q, max_seqlen_k=seq.k_len,
                               seqused_k=seqused, softmax_scale=scale, causal=True, block_table=table, out=out,
                               fa_version=3)  # fmt: skip

    return {
        "fa3": lambda: fa3(used),
        "fa3_no_keys": lambda: fa3(none),
        "select": lambda: kernels.paged_select(q, kc, vc, table, [seq], block_size=128, stride=16, threshold=tau,
                                               scale=scale),  # fmt: skip
        "sparse_fa3": lambda: fa3_attend(q, kc, vc, table, [seq], sel, block_size=128, scale=scale, out=out),
        "sparse_triton": lambda: kernels.paged_attend(q, kc, vc, table, [seq], sel, block_size=128, scale=scale,
                                                      out=out),  # fmt: skip
        "_density": float(sel[0].count.sum()) / (q.shape[1] * kernels.causal_blocks(seq, 128)),
    }


def _time(fn: Any, reps: int) -> tuple[float, float]:
    """(GPU ms per call, host ms per call)."""
    import torch

    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    gpu = start.elapsed_time(end) / reps
    torch.cuda._sleep(int(2e9))  # ~1 s of GPU spin: the launches below queue behind it, none waits
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    host = (time.perf_counter() - t) * 1e3 / reps
    torch.cuda.synchronize()
    return gpu, host


def render(path: Path) -> None:
    """Print the table of a JSON written here and save a plot beside it (``.png``); any machine."""
    data = json.loads(path.read_text())
    rows, meta = data["rows"], data["meta"]
    print(f"{meta['device']}, tau {meta['tau']}, page {meta['page']}, {meta['reps']} calls per piece; ms per call")
    print("| shape | context | piece | density | GPU ms | host ms | host / GPU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['ctx']:,} | {r['piece']} | {r['density']:.2f} | {r['gpu_ms']:.3f} | "
              f"{r['host_ms']:.3f} | {r['host_ms'] / r['gpu_ms']:.2f} |")  # fmt: skip
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["shape"], r["ctx"]) for r in rows})
    pieces = list(dict.fromkeys(r["piece"] for r in rows))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.6), squeeze=False)
    for ax, (shape, ctx) in zip(axes[0], groups, strict=True):
        sub = {r["piece"]: r for r in rows if (r["shape"], r["ctx"]) == (shape, ctx)}
        xs = range(len(pieces))
        ax.bar([x - 0.2 for x in xs], [sub[p]["gpu_ms"] for p in pieces], 0.4, label="GPU")
        ax.bar([x + 0.2 for x in xs], [sub[p]["host_ms"] for p in pieces], 0.4, label="host")
        ax.set_xticks(list(xs), pieces, rotation=60, fontsize=7)
        ax.set_title(f"{shape}, context {ctx // 1024}K", fontsize=9)
        ax.set_yscale("log")
    axes[0][0].set_ylabel("ms per call (log)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"one layer, one 16K chunk: GPU vs host time per piece ({meta['device']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", type=Path, help="print the table of a JSON written here (+ a PNG beside it)")
    ap.add_argument("--shape", choices=sorted(SHAPES), action="append", help="repeatable (default: all)")
    ap.add_argument("--chunk", type=int, default=16384)
    ap.add_argument("--ctx", default="32768,131072", help="context lengths (comma separated)")
    ap.add_argument("--tau", type=float, default=0.4)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.render:
        render(args.render)
        return
    if not args.out:
        ap.error("--out is required (or --render)")
    import torch

    rows = []
    for shape in args.shape or sorted(SHAPES):
        for ctx in (int(c) for c in args.ctx.split(",")):
            pieces = _pieces(_inputs(shape, args.chunk, ctx), args.tau)
            density = pieces.pop("_density")
            for name, fn in pieces.items():
                gpu, host = _time(fn, args.reps)
                rows.append({"shape": shape, "chunk": args.chunk, "ctx": ctx, "piece": name, "density": density,
                             "gpu_ms": gpu, "host_ms": host})  # fmt: skip
                print(f"{shape:6s} ctx {ctx:7d} {name:14s} density {density:.2f}  GPU {gpu:8.3f} ms  host {host:6.3f} ms",
                      flush=True)  # fmt: skip
    meta = {"device": torch.cuda.get_device_name(), "tau": args.tau, "reps": args.reps, "page": PAGE}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
