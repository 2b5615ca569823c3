"""Block selection at 32K / 64K / 128K on one GPU: the bisection kernel against an earlier selection module.

``attention_backend.kernels.select`` finds each row's cut-off by bisection over the scores' bits; until
2026-12-07 it sorted each row in registers (``tl.sort``). Give that module (e.g. ``git show
906e43d:attention_backend/kernels/select.py > select_sort.py``) as ``--baseline`` and both run on the same
scores in the same process: CUDA-event time (median), the ratio, how many (head, query block, key block)
decisions differ between them and how many differ from the float64 torch reference (``attention_backend.select``,
first ``--ref-heads`` heads); the default (a call's rows at the lengths of ``select.level_sizes``: short causal rows
on fewer warps) against every row at the longest row's length (``levels=1``), with the decisions that differ between
them; with ``--sweep`` also the bisection kernel at 1, 2, 4 and 8 warps a row, and the search with 1-16 cut-off
candidates a round (``probes``) at each of those warp counts, with its decisions against the bisection's.
Scores: 32 query heads, per causal row a softmax-like mass (``rand ** 4``, normalised), and a second set with every score of a row tied
(uniform attention, as dummy weights give; rows whose ``tau`` boundary falls exactly on a tie sum are decided by
fp32 rounding). Writes ``<out>.json`` and prints a table.

    python bench/xattn_select_speed.py --baseline select_sort.py --out bench/results/xattn_kernels/xattn_select_speed
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
from pathlib import Path

import torch
import triton
from xattn_speed import bench_ms

from attention_backend.kernels.select import select_blocks_indexed, select_warps
from attention_backend.select import select_blocks

BLOCK = 128
WARPS = (1, 2, 4, 8)
PROBES = (1, 2, 4, 8, 16)  # select_blocks_indexed(probes=): cut-off candidates tested per search round


def scores_for(n_kb: int, heads: int, tied: bool, seed: int) -> torch.Tensor:
    """[heads, n_kb, n_kb] fp32 block masses, causal rows summing to 1 (or uniform: all tied)."""
    if tied:
        s = torch.ones(heads, n_kb, n_kb, device="cuda")
    else:
        gen = torch.Generator(device="cuda").manual_seed(seed)
        s = torch.rand(heads, n_kb, n_kb, device="cuda", generator=gen) ** 4
    s = torch.tril(s)
    return (s / s.sum(-1, keepdim=True)).float()


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("select_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(length: int, tied: bool, args: argparse.Namespace, base) -> dict:
    n_kb = length // BLOCK
    scores = scores_for(n_kb, args.heads, tied, seed=length)
    ref = select_blocks(scores[: args.ref_heads].cpu(), args.tau)  # float64, torch
    mask = select_blocks_indexed(scores, args.tau, first_qb=0)[0]
    row = {"length": length, "scores": "tied" if tied else "rand^4", "n_kb": n_kb,
           "warps": select_warps(triton.next_power_of_2(n_kb)),
           "ms": bench_ms(functools.partial(select_blocks_indexed, scores, args.tau, first_qb=0)),
           "density": mask.sum().item() / (args.heads * n_kb * (n_kb + 1) / 2),
           "ref_differ": (mask[: args.ref_heads].cpu() != ref).sum().item()}  # fmt: skip
    one = functools.partial(select_blocks_indexed, scores, args.tau, first_qb=0, levels=1)
    row["ms_one_level"] = bench_ms(one)
    row["levels_differ"] = (one()[0] != mask).sum().item()
    if args.sweep:
        sweep(row, scores, mask, args)
    if base is not None:
        want = base.select_blocks_indexed(scores, args.tau, first_qb=0)[0]
        row["baseline_ms"] = bench_ms(functools.partial(base.select_blocks_indexed, scores, args.tau, first_qb=0))
        row["speedup"] = row["baseline_ms"] / row["ms"]
        row["decisions_differ"] = (mask != want).sum().item()
        row["baseline_ref_differ"] = (want[: args.ref_heads].cpu() != ref).sum().item()
    return row


def sweep(row: dict, scores: torch.Tensor, mask: torch.Tensor, args: argparse.Namespace) -> None:
    """The bisection at each warp count and the search with more probes a round, into ``row``."""
    row["ms_by_warps"] = {
        w: bench_ms(functools.partial(select_blocks_indexed, scores, args.tau, first_qb=0, num_warps=w)) for w in WARPS
    }
    # the search with more cut-off candidates a round (fewer dependent rounds): time at each warp count, and how many
    # decisions differ from the bisection's (none expected: the same cut-off, found in fewer rounds)
    # (probes 1 is the bisection timed above: its times are reused, not measured again)
    row["ms_by_probes_warps"] = {f"1x{w}": ms for w, ms in row["ms_by_warps"].items()}
    row["probes_differ"] = {}
    for p in PROBES[1:]:
        row["probes_differ"][p] = (select_blocks_indexed(scores, args.tau, first_qb=0, probes=p)[0] != mask).sum().item()
        for w in WARPS:
            fn = functools.partial(select_blocks_indexed, scores, args.tau, first_qb=0, num_warps=w, probes=p)
            row["ms_by_probes_warps"][f"{p}x{w}"] = bench_ms(fn)
    row["fastest"] = min(row["ms_by_probes_warps"], key=row["ms_by_probes_warps"].get)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lens", default="32768,65536,131072")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--ref-heads", type=int, default=4, help="heads checked against the float64 torch reference")
    ap.add_argument("--sweep", action="store_true", help="also warps x probes (SELECT_PROBES, select_warps)")
    ap.add_argument("--baseline", type=Path, help="an earlier attention_backend/kernels/select.py to time alongside")
    ap.add_argument("--out", type=Path, default=Path("bench/results/xattn_kernels/xattn_select_speed"))
    args = ap.parse_args()
    base = load_module(args.baseline) if args.baseline else None
    rows = []
    for length in (int(x) for x in args.lens.split(",")):
        for tied in (False, True):
            rows.append(measure(length, tied, args, base))
            print(json.dumps(rows[-1]), flush=True)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tau": args.tau, "heads": args.heads,
           "baseline": str(args.baseline) if args.baseline else None, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    nan = float("nan")
    print(f"\n{res['device']}, {args.heads} heads, tau {args.tau}; differ = (head, query block, key block) decisions")
    print(f"{'length':>8} {'scores':>7} {'density':>7} {'ms':>7} {'1 level':>7} {'ratio':>6} {'differ':>6}"
          f" {'baseline':>8} {'ratio':>6} {'differ':>6} {'vs ref':>6} {'base':>5}")  # fmt: skip
    for r in rows:
        print(f"{r['length']:>8} {r['scores']:>7} {r['density']:7.3f} {r['ms']:7.3f} {r['ms_one_level']:7.3f}"
              f" {r['ms'] / r['ms_one_level']:5.2f}x {r['levels_differ']:>6} {r.get('baseline_ms', nan):8.3f}"
              f" {1 / r.get('speedup', nan):5.2f}x {r.get('decisions_differ', -1):>6} {r['ref_differ']:>6}"
              f" {r.get('baseline_ref_differ', -1):>5}")  # fmt: skip
    for r in rows if args.sweep else ():
        print(f"{r['length']} {r['scores']}: bisect ms at {' / '.join(map(str, WARPS))} warps "
              + " / ".join(f"{v:.3f}" for v in r["ms_by_warps"].values()) + "; probes x warps "
              + " ".join(f"{k} {v:.3f}" for k, v in r["ms_by_probes_warps"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
