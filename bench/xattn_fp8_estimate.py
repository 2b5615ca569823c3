"""Does an fp8 estimation GEMM change XAttention's selection on real attention? (issue 14, must-have 3)

``estimate_fp8`` runs the estimation GEMM on e4m3 copies of q and k, each head scaled by its absolute maximum
(``attention_backend.fp8.to_fp8_per_head``), for twice bf16's tensor-core rate. This measures what
that rounding does to the selection, on CPU, on post-RoPE q/k captured from a packaged real model: per full
attention layer, the same estimate (torch path, S=16) and selection (tau 0.9) on the bf16 operands the GPU sees
and on their fp8 round trips (per head: the fused TMA kernel; per reshaped row: the library-GEMM path); the share of (head, query block, key block) decisions that change, the kept
density and the attention recall (true softmax mass inside the kept blocks) of both. Its speed is the GPU's
question (``bench/xattn_est_sweep.py --fp8``).

    .venv/bin/python bench/xattn_fp8_estimate.py --len 4096                      # packaged SmolLM2-135M
    .venv/bin/python bench/xattn_fp8_estimate.py --model ~/.cache/xedge/models/gemma-3-270m --len 8192
    # (the Gemma HF dir as in bench/results/xattn_density/notes.md); each run adds its model to the JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from attention_backend.calibrate import token_recall, true_block_mass
from attention_backend.capture import QKCapture, full_attention_layers
from attention_backend.estimate import estimate_block_scores
from attention_backend.fp8 import fp8_round_trip, fp8_rows_round_trip
from attention_backend.sample_text import long_texts
from attention_backend.select import select_blocks

OUT = Path(__file__).resolve().parent / "results" / "xattn_kernels" / "xattn_fp8_estimate.json"
BLOCK, TAU = 128, 0.9


def layer_row(layer: int, q: torch.Tensor, k: torch.Tensor, scale: float, stride: int) -> dict[str, float]:
    masks = {}
    variants = {"bf16": (q, k), "fp8": (fp8_round_trip(q), fp8_round_trip(k)),
                "fp8rows": (fp8_rows_round_trip(q, stride), fp8_rows_round_trip(k, stride))}
    for name, (qq, kk) in variants.items():
        scores = estimate_block_scores(qq, kk, block_size=BLOCK, stride=stride, scale=scale)
        masks[name] = select_blocks(scores, TAU)
    mass = true_block_mass(q, k, block_size=BLOCK, scale=scale)
    causal = masks["bf16"].shape[0] * int(torch.tril(torch.ones(masks["bf16"].shape[1:], dtype=torch.bool)).sum())
    row: dict[str, float] = {"layer": layer, "decisions_changed": int((masks["bf16"] ^ masks["fp8"]).sum()) / causal,
                             "decisions_changed_fp8rows": int((masks["bf16"] ^ masks["fp8rows"]).sum()) / causal}
    for name, mask in masks.items():
        row[f"density_{name}"] = int(mask.sum()) / causal
        row[f"recall_{name}"] = float(token_recall(mass, mask, block_size=BLOCK, q_offset=0).mean())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="local HF model dir (default: packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--len", type=int, default=4096, help="prompt tokens")
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from server.models.store import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    t0 = time.perf_counter()
    cap = QKCapture(model_dir)
    full = set(full_attention_layers(cap.config))
    text = long_texts(1, args.len * 6)[0]
    layers = [c for c in cap.capture(text, args.len) if c.layer in full]
    rows = []
    print(f"{model_dir.name}, {args.len} tokens, S={args.stride}, tau {TAU}: bf16 vs fp8 operands")
    print("| layer | decisions changed: per head / per row | density bf16 / fp8 / fp8 rows "
          "| recall bf16 / fp8 / fp8 rows |\n|---|---|---|---|")
    for c in layers:
        q, k = c.q.to(torch.bfloat16).float(), c.k.to(torch.bfloat16).float()  # what the GPU kernels read
        r = layer_row(c.layer, q, k, c.scale, args.stride)
        rows.append(r)
        print(f"| {r['layer']} | {100 * r['decisions_changed']:.2f} % / {100 * r['decisions_changed_fp8rows']:.2f} % "
              f"| {r['density_bf16']:.4f} / {r['density_fp8']:.4f} / {r['density_fp8rows']:.4f} "
              f"| {r['recall_bf16']:.4f} / {r['recall_fp8']:.4f} / {r['recall_fp8rows']:.4f} |", flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "layer"}
    print(f"| mean | {100 * mean['decisions_changed']:.2f} % / {100 * mean['decisions_changed_fp8rows']:.2f} % "
          f"| {mean['density_bf16']:.4f} / {mean['density_fp8']:.4f} / {mean['density_fp8rows']:.4f} "
          f"| {mean['recall_bf16']:.4f} / {mean['recall_fp8']:.4f} / {mean['recall_fp8rows']:.4f} |")
    data = json.loads(args.out.read_text()) if args.out.is_file() else {"models": {}}
    data["models"][model_dir.name] = {
        "command": f".venv/bin/python bench/xattn_fp8_estimate.py --len {args.len}"
        + (f" --model {args.model}" if args.model else ""),
        "tokens": args.len, "stride": args.stride, "tau": TAU, "block": BLOCK, "layers": rows, "mean": mean,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()}, torch {torch.__version__}",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
