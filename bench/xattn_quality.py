"""XAttention quality on real attention: SmolLM2-135M on long real text, every layer and head, on CPU.

Captures post-RoPE q/k/v of all 30 layers for one long prompt (real GSM8K/CSQA text with chains of
thought from ../shared/data), then for S in {8, 16} and several tau (plus a per-head calibrated table)
measures, over all layers and heads:
  density      kept causal blocks / all causal blocks (1.0 = dense)
  recall       true attention probability inside the kept blocks, mean over query tokens, and the
               worst token row (min) and 1st percentile
  rel_err      ||out - dense|| / ||dense|| of the attention output, mean over layers (worst layer too)
Baselines in the same run: dense attention (density 1, the reference), and a streaming mask (sink block +
the most recent blocks) with exactly as many blocks per (head, row) as XAttention kept, so recall and error
compare at equal density (``*_vs_stream`` ratios); an oracle with the same block counts chosen by the true
attention mass gives the recall upper bound. The calibrated table is fitted on a different prompt.

    .venv/bin/python bench/xattn_quality.py --tokens 4096 --out bench/results/xattn_quality/xattn_quality
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from attention_backend import block_sparse_attention, estimate_block_scores, select_blocks
from attention_backend.baselines import oracle_mask, row_block_mass, streaming_mask
from attention_backend.calibrate import calibrate_layer, token_recall, true_block_mass
from attention_backend.capture import CapturedLayer, QKCapture
from attention_backend.sample_text import long_texts

BLOCK = 128


def evaluate(layers: list[CapturedLayer], stride: int, taus: list[torch.Tensor], truth: list[dict]) -> dict[str, Any]:
    """One configuration over all layers: ``taus[l]`` is [Hq] for layer l."""
    kept = causal = 0
    recalls, stream_recalls, oracle_recalls, errs, stream_errs = [], [], [], [], []
    t_sparse = 0.0
    for lay, tau, ref in zip(layers, taus, truth, strict=False):
        t0 = time.perf_counter()
        scores = estimate_block_scores(lay.q, lay.k, block_size=BLOCK, stride=stride, scale=lay.scale)
        mask = select_blocks(scores, tau)
        out = block_sparse_attention(lay.q, lay.k, lay.v, mask, block_size=BLOCK, scale=lay.scale)
        t_sparse += time.perf_counter() - t0
        stream = streaming_mask(mask)
        out_stream = block_sparse_attention(lay.q, lay.k, lay.v, stream, block_size=BLOCK, scale=lay.scale)
        nqb = mask.shape[1]
        kept += int(mask.sum())
        causal += mask.shape[0] * nqb * (nqb + 1) // 2
        recalls.append(token_recall(ref["mass"], mask, block_size=BLOCK, q_offset=0).flatten())
        stream_recalls.append(token_recall(ref["mass"], stream, block_size=BLOCK, q_offset=0).flatten())
        oracle = oracle_mask(mask, row_block_mass(ref["mass"], BLOCK))
        oracle_recalls.append(token_recall(ref["mass"], oracle, block_size=BLOCK, q_offset=0).flatten())
        dense = ref["dense"]
        errs.append(float((out - dense).norm() / dense.norm()))
        stream_errs.append(float((out_stream - dense).norm() / dense.norm()))
    rec, srec = torch.cat(recalls), torch.cat(stream_recalls)
    return {
        "density": kept / causal,
        "recall_mean": float(rec.mean()),
        "recall_p01": float(rec.quantile(0.01)),
        "recall_min": float(rec.min()),
        "rel_err_mean": sum(errs) / len(errs),
        "rel_err_max": max(errs),
        "stream_recall_mean": float(srec.mean()),
        "stream_rel_err_mean": sum(stream_errs) / len(stream_errs),
        "oracle_recall_mean": float(torch.cat(oracle_recalls).mean()),
        "recall_vs_stream": float(rec.mean() / srec.mean()),
        "rel_err_vs_stream": (sum(errs) / len(errs)) / max(sum(stream_errs) / len(stream_errs), 1e-12),
        "sparse_seconds": t_sparse,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--taus", default="0.5,0.7,0.8,0.9,0.95,0.99")
    ap.add_argument("--strides", default="8,16")
    ap.add_argument("--target", type=float, default=0.9, help="calibration target (share of true mass)")
    ap.add_argument("--model", default=None, help="local HF model dir (default: packaged SmolLM2-135M)")
    ap.add_argument("--out", default="bench/results/xattn_quality/xattn_quality")
    args = ap.parse_args()
    from server.models.store import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    torch.manual_seed(0)
    eval_text, calib_text = long_texts(2, args.tokens * 6)
    cap = QKCapture(model_dir)
    t0 = time.perf_counter()
    layers = cap.capture(eval_text, args.tokens)
    calib_layers = cap.capture(calib_text, args.tokens)
    n_tok, hq = layers[0].q.shape[:2]
    print(f"captured {len(layers)} layers x {hq} heads, {n_tok} tokens (+ a calibration prompt) in {time.perf_counter() - t0:.0f} s")

    truth = []
    t_dense = 0.0
    for lay in layers:
        t1 = time.perf_counter()
        full = torch.ones(hq, -(-n_tok // BLOCK), -(-n_tok // BLOCK), dtype=torch.bool).tril()
        dense = block_sparse_attention(lay.q, lay.k, lay.v, full, block_size=BLOCK, scale=lay.scale)
        t_dense += time.perf_counter() - t1
        truth.append({"mass": true_block_mass(lay.q, lay.k, block_size=BLOCK, scale=lay.scale), "dense": dense})

    rows = []
    for stride in [int(s) for s in args.strides.split(",")]:
        for tau in [float(t) for t in args.taus.split(",")]:
            res = evaluate(layers, stride, [torch.full((hq,), tau, dtype=torch.float64)] * len(layers), truth)
            rows.append({"stride": stride, "tau": tau, **res})
            _print_row(rows[-1])
        table = [
            calibrate_layer([(c.q, c.k)], block_size=BLOCK, stride=stride, target=args.target, scale=c.scale)
            for c in calib_layers
        ]
        res = evaluate(layers, stride, table, truth)
        rows.append({"stride": stride, "tau": f"calibrated@{args.target}", "mean_tau": float(torch.stack(table).mean()), **res})
        _print_row(rows[-1])

    result = {
        "bench": "xattn_quality",
        "model": str(model_dir),
        "text": "router_train GSM8K/CSQA prompts + chains of thought (../shared/data), eval and calibration prompts disjoint",
        "tokens": n_tok,
        "layers": len(layers),
        "heads": hq,
        "block_size": BLOCK,
        "baselines": {
            "dense": {"density": 1.0, "recall_mean": 1.0, "rel_err_mean": 0.0, "seconds": t_dense},
            "streaming": "sink + most recent blocks, same block count per (head, row) as XAttention",
            "oracle": "top blocks by TRUE attention mass, same block count per (head, row): recall upper bound",
        },
        "rows": rows,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "command": "python bench/xattn_quality.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    _plot(rows, out.with_suffix(".png"), n_tok)
    print(f"dense torch path: {t_dense:.1f} s for all layers; wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


def _print_row(r: dict[str, Any]) -> None:
    tau = r["tau"] if isinstance(r["tau"], str) else f"{r['tau']:.2f}"
    if not _print_row.header:  # type: ignore[attr-defined]
        print(f"{'S':>3} {'tau':>16} {'density':>8} {'recall':>7} {'p01':>6} {'min':>6} {'rel_err':>8} {'stream_rec':>10} {'oracle_rec':>10} {'rec/strm':>8} {'err/strm':>8}")
        _print_row.header = True  # type: ignore[attr-defined]
    print(
        f"{r['stride']:>3} {tau:>16} {r['density']:8.3f} {r['recall_mean']:7.4f} {r['recall_p01']:6.3f} "
        f"{r['recall_min']:6.3f} {r['rel_err_mean']:8.4f} {r['stream_recall_mean']:10.4f} {r['oracle_recall_mean']:10.4f} "
        f"{r['recall_vs_stream']:8.3f} {r['rel_err_vs_stream']:8.3f}"
    )


_print_row.header = False  # type: ignore[attr-defined]


def _plot(rows: list[dict[str, Any]], path: Path, n_tok: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for stride, color in ((8, "tab:blue"), (16, "tab:orange")):
        sweep = [r for r in rows if r["stride"] == stride and not isinstance(r["tau"], str)]
        cal = [r for r in rows if r["stride"] == stride and isinstance(r["tau"], str)]
        if not sweep:
            continue
        ax.plot([r["density"] for r in sweep], [r["recall_mean"] for r in sweep], "o-", color=color, label=f"XAttention S={stride} (tau sweep)")
        ax.plot([r["density"] for r in sweep], [r["stream_recall_mean"] for r in sweep], "x--", color=color, alpha=0.6, label=f"streaming, same density (S={stride} rows)")
        for r in sweep:
            ax.annotate(f"{r['tau']:g}", (r["density"], r["recall_mean"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.plot([r["density"] for r in sweep], [r["oracle_recall_mean"] for r in sweep], "^:", color=color, alpha=0.6, label=f"oracle (true top blocks), same density (S={stride} rows)")
        ax.plot([r["density"] for r in cal], [r["recall_mean"] for r in cal], "*", ms=14, color=color, label=f"calibrated per head, S={stride}")
    ax.plot([1.0], [1.0], "ks", label="dense")
    ax.set_xlabel("density (kept causal blocks)")
    ax.set_ylabel("attention recall (mean over tokens)")
    ax.set_title(f"XAttention on SmolLM2-135M, {n_tok} tokens of real text, 30 layers x 9 heads")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
