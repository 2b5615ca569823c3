"""Block selection at 32K / 64K / 128K on one GPU: the bisection kernel against an earlier selection module.

``attention_backend.kernels.select`` finds each row's cut-off by bisection over the scores' bits; until
2026-12-07 it sorted each row in registers (``tl.sort``). Give that module (e.g. ``git show
906e43d:attention_backend/kernels/select.py > select_sort.py``) as ``--baseline`` and both run on the same
scores in the same process: CUDA-event time (median), the ratio, and how many (head, query block, key block)
decisions differ. Scores: 32 query heads, per causal row a softmax-like mass (``rand ** 4``, normalised), and
a second set with every score tied (uniform attention, as dummy weights give). Writes ``<out>.json`` and prints
a table.

    python bench/xattn_select_speed.py --baseline select_sort.py --out bench/results/xattn_kernels/xattn_select_speed
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
from pathlib import Path

import torch
from xattn_speed import bench_ms

from attention_backend.kernels.select import select_blocks_indexed

BLOCK = 128


def scores_for(n_kb: int, heads: int, tied: bool, seed: int) -> torch.Tensor:
    """[heads, n_kb, n_kb] fp32 block masses, causal rows summing to 1 (or uniform: all tied)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    raw = torch.ones if tied else (lambda *s, **kw: torch.rand(*s, **kw) ** 4)
    kw = {} if tied else {"generator": gen}
    s = raw(heads, n_kb, n_kb, device="cuda", **kw)
    s = torch.tril(s)
    return (s / s.sum(-1, keepdim=True)).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="32768,65536,131072")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument(
        "--baseline", type=Path, help="an earlier attention_backend/kernels/select.py to time alongside"
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/xattn_kernels/xattn_select_speed"))
    args = ap.parse_args()
    base = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("select_baseline", args.baseline)
        base = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(base)
    rows = []
    for length in (int(x) for x in args.lens.split(",")):
        n_kb = length // BLOCK
        for tied in (False, True):
            scores = scores_for(n_kb, args.heads, tied, seed=length)
            row = {"length": length, "scores": "tied" if tied else "rand^4", "n_kb": n_kb}
            mask = select_blocks_indexed(scores, args.tau, first_qb=0)[0]
            row["ms"] = bench_ms(functools.partial(select_blocks_indexed, scores, args.tau, first_qb=0))
            row["density"] = mask.sum().item() / (args.heads * n_kb * (n_kb + 1) / 2)
            if base is not None:
                want = base.select_blocks_indexed(scores, args.tau, first_qb=0)[0]
                row["baseline_ms"] = bench_ms(
                    functools.partial(base.select_blocks_indexed, scores, args.tau, first_qb=0)
                )
                row["speedup"] = row["baseline_ms"] / row["ms"]
                row["decisions_differ"] = (mask != want).sum().item()
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "tau": args.tau,
        "heads": args.heads,
        "baseline": str(args.baseline) if args.baseline else None,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(f"\n{res['device']}, {args.heads} heads, tau {args.tau}")
    print(
        f"{'length':>8} {'scores':>7} {'density':>7} {'bisect ms':>9} {'sort ms':>8} {'speed-up':>8} {'differ':>6}"
    )
    for r in rows:
        print(
            f"{r['length']:>8} {r['scores']:>7} {r['density']:7.3f} {r['ms']:9.3f} {r.get('baseline_ms', float('nan')):8.3f} "
            f"{r.get('speedup', float('nan')):7.2f}x {r.get('decisions_differ', -1):>6}"
        )


if __name__ == "__main__":
    main()
