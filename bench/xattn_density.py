"""Block density on real attention vs prompt length: XAttention against the oracle and sink+recent.

``measure``: for one local HF model, captures post-RoPE q/k of real prompts (GSM8K/CSQA text with chains of
thought, from ../shared/data or ``--text-file``) at each length, on the model's full-attention layers
only (Gemma-3's sliding layers are served dense by the backend and skipped). Per (layer, head) and target
recall r (recall = the mean over the head's query tokens of the TRUE attention probability inside the
kept 128x128 causal blocks):
  oracle      the fewest causal blocks, ranked by true block mass over all query blocks of the head,
              whose recall reaches r (the lower bound for that criterion); ``oracle_row`` also requires
              every query block to reach r on its own tokens
  xattn       XAttention (antidiagonal estimate at stride S, per-query-block threshold selection) with
              the per-head tau calibrated on this capture to reach r (in-sample: its best case)
  stream      sink block + the w most recent blocks in every query block, the fewest w reaching r
and, at XAttention's exact block count per (head, query block), the recall of sink+recent
(``stream_same``) and of the oracle (``oracle_same``). Density = kept / causal blocks, over all heads.
It also writes the per-head tau table at ``--table-target`` (max over prompts and over lengths >=
``--table-min-len``) in the format ``xedge serve --xattn-threshold-table`` and the shipped tables take.

``report``: merges the per-model JSON files, prints the table, fits density = a * L^-b per model, method
and r on the measured lengths, and extrapolates to 128K (labelled "extrapolation"); writes
xattn_density.json and xattn_density.png.

    .venv/bin/python bench/xattn_density.py measure --lengths 1024,2048 --out /tmp/d/smollm2.json
    .venv/bin/python bench/xattn_density.py report /tmp/d/smollm2.json --out bench/results/xattn_density
On CUDA the model runs in bf16 and the estimate/selection use the Triton kernels; see bench/h200/density.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

from attention_backend import estimate_block_scores, select_blocks
from attention_backend.baselines import (
    mask_recall,
    oracle_mask,
    oracle_min_blocks,
    oracle_min_blocks_per_row,
    row_block_mass,
    streaming_mask,
    streaming_min_blocks,
)
from attention_backend.calibrate import TABLE_FORMAT, calibrate_heads, true_block_mass
from attention_backend.capture import CapturedLayer, QKCapture, full_attention_layers
from attention_backend.shipped_tables import load_shipped_table, model_key

METHODS = ("oracle", "oracle_row", "xattn", "stream")
EXTRAPOLATE_TO = (65536, 131072)


def prompt_ids(tokenizer: Any, text_file: str | None, prompts: int, tokens: int, bos: bool) -> list[list[int]]:
    """``prompts`` disjoint token sequences of ``tokens`` tokens each (BOS first with ``bos``)."""
    if text_file:
        text = Path(text_file).read_text()
        step = len(text) // prompts
        texts = [text[i * step : (i + 1) * step] for i in range(prompts)]
    else:
        from attention_backend.sample_text import long_texts

        texts = long_texts(prompts, tokens * 6)
    out = []
    for i, text in enumerate(texts):
        ids = list(tokenizer(text, add_special_tokens=True).input_ids)
        if bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
            ids = [tokenizer.bos_token_id, *ids]
        if len(ids) < tokens:
            raise ValueError(f"prompt {i}: expected >= {tokens} tokens of text, got {len(ids)} (more text or fewer --prompts)")
        out.append(ids[:tokens])
    return out


def measure_layer(
    lay: CapturedLayer,
    *,
    block: int,
    stride: int,
    targets: list[float],
    chunk: int,
    torch_estimate: bool = False,
    fixed_tau: list[float] | None = None,
) -> dict[str, Any]:
    """Every method at every target for one captured layer: per head block counts, recalls and tau.
    ``torch_estimate``: estimate, select and calibrate with the torch path on CPU (fp32) even when the
    capture is on CUDA (the true mass is still computed where the capture is). ``fixed_tau``: also the
    density and recall of this layer's row of a given table (out of sample: ``--eval-table``)."""
    n_tok, hq = lay.q.shape[:2]
    mass = true_block_mass(lay.q, lay.k, block_size=block, scale=lay.scale, chunk_tokens=chunk)
    q, k = lay.q, lay.k
    if torch_estimate:
        mass, q, k = mass.cpu(), q.cpu().float(), k.cpu().float()
    rm = row_block_mass(mass, block)
    scores = estimate_block_scores(q, k, block_size=block, stride=stride, scale=lay.scale)
    out: dict[str, Any] = {"layer": lay.layer}
    for r in targets:
        tau = calibrate_heads(scores, mass, block_size=block, q_offset=0, target=r)
        mask = select_blocks(scores, tau.tolist())
        same_stream = streaming_mask(mask)
        same_oracle = oracle_mask(mask, rm)
        stream_blocks, window = streaming_min_blocks(rm, r, n_tok)
        res = {
            "tau": tau.tolist(),
            "blocks": {
                "xattn": mask.sum((1, 2)).tolist(),
                "oracle": oracle_min_blocks(rm, r, n_tok).tolist(),
                "oracle_row": oracle_min_blocks_per_row(rm, r, block, n_tok).tolist(),
                "stream": stream_blocks.tolist(),
            },
            "stream_window": window.tolist(),
            "recall": {
                "xattn": mask_recall(rm, mask, n_tok).tolist(),
                "stream_same": mask_recall(rm, same_stream, n_tok).tolist(),
                "oracle_same": mask_recall(rm, same_oracle, n_tok).tolist(),
            },
        }
        out[f"{r:g}"] = res
    if fixed_tau is not None:
        mask = select_blocks(scores, fixed_tau)
        out["eval_table"] = {"blocks": mask.sum((1, 2)).tolist(), "recall": mask_recall(rm, mask, n_tok).tolist()}
    del mass
    return out


def summarise(layers: list[dict[str, Any]], r: float, causal: int) -> dict[str, Any]:
    """Mean over (prompt, layer, head) entries of one length and target."""
    key = f"{r:g}"
    row: dict[str, Any] = {}
    n_heads = sum(len(lay[key]["tau"]) for lay in layers)
    for m in METHODS:
        row[f"{m}_density"] = sum(sum(lay[key]["blocks"][m]) for lay in layers) / (n_heads * causal)
    # per head the cheaper of the two deployable masks (both reach r on that head): what a per-head choice
    # between XAttention's tau and a sink + recent window would need
    row["best_of_density"] = sum(
        min(x, w) for lay in layers for x, w in zip(lay[key]["blocks"]["xattn"], lay[key]["blocks"]["stream"], strict=True)
    ) / (n_heads * causal)
    for m in ("xattn", "stream_same", "oracle_same"):
        row[f"{m}_recall"] = sum(sum(lay[key]["recall"][m]) for lay in layers) / n_heads
    row["xattn_recall_min"] = min(min(lay[key]["recall"]["xattn"]) for lay in layers)
    row["mean_tau"] = sum(sum(lay[key]["tau"]) for lay in layers) / n_heads
    if all("eval_table" in lay for lay in layers):
        row["table_density"] = sum(sum(lay["eval_table"]["blocks"]) for lay in layers) / (n_heads * causal)
        recalls = [x for lay in layers for x in lay["eval_table"]["recall"]]
        row["table_recall"] = sum(recalls) / len(recalls)
        row["table_recall_min_head"] = min(recalls)
    return row


def measure(args: argparse.Namespace) -> None:
    from transformers import AutoConfig

    from server.models.store import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    chunk = args.chunk or (4096 if device == "cuda" else 1024)
    lengths = sorted(int(x) for x in args.lengths.split(","))
    targets = [float(x) for x in args.targets.split(",")]
    if args.table_target not in targets:
        raise ValueError(f"--table-target: expected one of --targets {targets}, got {args.table_target}")
    bad = [n for n in lengths if n % args.block]
    if bad:
        raise ValueError(f"--lengths: expected multiples of the block size {args.block}, got {bad}")
    config = AutoConfig.from_pretrained(model_dir)
    text_config = getattr(config, "get_text_config", lambda: config)()
    full = full_attention_layers(text_config)
    t0 = time.perf_counter()
    cap = QKCapture(model_dir, device=device, dtype=dtype, layers=full)
    rope = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None)
    print(f"[load] {model_dir.name}: {cap.num_layers} layers, full attention in {full}, {device} {dtype}, rope {rope}, {time.perf_counter() - t0:.1f} s", flush=True)
    ids = prompt_ids(cap.tokenizer, args.text_file, args.prompts, max(lengths), args.bos)
    eval_table = None
    if args.eval_table:
        shipped = load_shipped_table(Path(args.eval_table))
        if shipped.model_key != model_key(text_config) or shipped.stride != args.stride or shipped.block_size != args.block:
            raise ValueError(
                f"--eval-table: expected a table for {model_key(text_config)} at S={args.stride}, B={args.block}, "
                f"got {shipped.model_key} at S={shipped.stride}, B={shipped.block_size}"
            )
        eval_table = shipped.threshold
    key = model_key(text_config)
    hq = int(text_config.num_attention_heads)
    header = {
        "bench": "xattn_density",
        "model": model_dir.name,
        "model_dir": str(model_dir),
        "model_key": key,
        "num_layers": cap.num_layers,
        "rope": rope,
        "max_position_embeddings": cap.max_positions,
        "full_attention_layers": full,
        "num_heads": hq,
        "block_size": args.block,
        "stride": args.stride,
        "targets": targets,
        "prompts": args.prompts,
        "text": args.text_file or "router_train GSM8K/CSQA prompts + chains of thought (../shared/data)",
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "dtype": str(dtype),
        "eval_table": args.eval_table,
        "estimate": "Triton kernels (CUDA)" if device == "cuda" and args.estimate == "auto" else "torch path (CPU, fp32)",
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "command": "python bench/xattn_density.py measure " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False) and k not in ("func", "cmd")),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_length: list[dict[str, Any]] = []
    for n_tok in lengths:
        t1 = time.perf_counter()
        layers = []
        for p, seq in enumerate(ids):
            captured = cap.capture_ids(seq[:n_tok])
            for lay in captured:
                res = measure_layer(
                    lay, block=args.block, stride=args.stride, targets=targets, chunk=chunk,
                    torch_estimate=args.estimate == "torch",
                    fixed_tau=list(eval_table[lay.layer]) if eval_table else None,
                )  # fmt: skip
                layers.append({"prompt": p, **res})
            del captured
        nqb = n_tok // args.block
        causal = nqb * (nqb + 1) // 2
        rows = {f"{r:g}": summarise(layers, r, causal) for r in targets}
        per_length.append({"tokens": n_tok, "seconds": time.perf_counter() - t1, "summary": rows, "layers": layers})
        for r in targets:
            print_row(model_dir.name, n_tok, r, rows[f"{r:g}"])
        if device == "cuda":
            torch.cuda.empty_cache()
        # written after every length: a run stopped by a time limit keeps what it measured
        table = threshold_table(result_lengths=per_length, args=args, num_layers=cap.num_layers, hq=hq, model=model_dir.name, key=key)
        result = {**header, "complete": len(per_length) == len(lengths), "lengths": per_length, "table": table}
        out.write_text(json.dumps(result, indent=1, default=str))
        if args.table_out:
            Path(args.table_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.table_out).write_text(json.dumps(table, indent=1))
    print(f"[measure] {model_dir.name}: {time.perf_counter() - t0:.0f} s in all; wrote {out}", flush=True)
    if args.table_out:
        print(f"[table] wrote {args.table_out}: target {args.table_target}, mean tau {table['mean_tau']:.3f}, from {table['calibrated_on']}")


def threshold_table(*, result_lengths: list[dict[str, Any]], args: argparse.Namespace, num_layers: int, hq: int, model: str, key: str) -> dict[str, Any]:
    """Per-(layer, query head) tau at ``--table-target``: the max over prompts and over the lengths >=
    ``--table-min-len`` (the longest length when none is), 1.0 (dense) on layers not measured."""
    use = [e for e in result_lengths if e["tokens"] >= args.table_min_len] or [result_lengths[-1]]
    tkey = f"{args.table_target:g}"
    table = [[0.0] * hq for _ in range(num_layers)]
    measured = set()
    for entry in use:
        for lay in entry["layers"]:
            measured.add(lay["layer"])
            row = table[lay["layer"]]
            for h, t in enumerate(lay[tkey]["tau"]):
                row[h] = max(row[h], t)
    for i in range(num_layers):
        if i not in measured:
            table[i] = [1.0] * hq
    rounded = [[min(1.0, math.ceil(t * 1e4) / 1e4) for t in row] for row in table]
    return {
        "format": TABLE_FORMAT,
        "model": model,
        "model_key": key,
        "threshold": rounded,
        "target": args.table_target,
        "block_size": args.block,
        "stride": args.stride,
        "calibrated_on": {"tokens": [e["tokens"] for e in use], "prompts": args.prompts, "layers": sorted(measured)},
        "mean_tau": sum(map(sum, (rounded[i] for i in sorted(measured)))) / (len(measured) * hq),
        "note": "layers not calibrated (sliding-window, served dense) hold 1.0",
    }


def print_row(model: str, n_tok: int, r: float, row: dict[str, Any]) -> None:
    if not print_row.header:  # type: ignore[attr-defined]
        print(f"{'model':>24} {'tokens':>7} {'r':>5} {'oracle':>7} {'orc_row':>7} {'xattn':>7} {'stream':>7} {'best_of':>7} | {'x_rec':>6} {'strm@x':>6} {'orc@x':>6} {'tau':>5}")
        print_row.header = True  # type: ignore[attr-defined]
    print(
        f"{model:>24} {n_tok:>7} {r:>5g} {row['oracle_density']:7.3f} {row['oracle_row_density']:7.3f} "
        f"{row['xattn_density']:7.3f} {row['stream_density']:7.3f} {row.get('best_of_density', float('nan')):7.3f} | {row['xattn_recall']:6.3f} "
        f"{row['stream_same_recall']:6.3f} {row['oracle_same_recall']:6.3f} {row['mean_tau']:5.3f}"
        + (f" | table: density {row['table_density']:.3f} recall {row['table_recall']:.3f} (worst head {row['table_recall_min_head']:.3f})" if "table_density" in row else ""),
        flush=True,
    )


print_row.header = False  # type: ignore[attr-defined]


def fit_power_law(lengths: list[int], density: list[float]) -> dict[str, Any]:
    """Least squares of log d = log a - b log L; with one length there is no trend (b = None)."""
    if len(lengths) < 2:
        return {"a": None, "b": None, "points": len(lengths)}
    x = torch.tensor([math.log(n) for n in lengths], dtype=torch.float64)
    y = torch.tensor([math.log(max(d, 1e-9)) for d in density], dtype=torch.float64)
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    a = math.exp(float(ym) - slope * float(xm))
    resid = y - (math.log(a) + slope * x)
    return {"a": a, "b": -slope, "points": len(lengths), "rms_log_residual": float(resid.pow(2).mean().sqrt())}


def report(args: argparse.Namespace) -> None:
    runs = []
    for p in args.inputs:  # per-model files from ``measure``, or a merged xattn_density.json (re-plot)
        data = json.loads(Path(p).read_text())
        runs += data.get("runs", [data])
    for run in runs:  # summaries from the per-head data, so a JSON from an older version gets every column
        for e in run["lengths"]:
            nqb = e["tokens"] // run["block_size"]
            e["summary"] = {f"{r:g}": summarise(e["layers"], r, nqb * (nqb + 1) // 2) for r in run["targets"]}
    summary = []
    fits = []
    for run in runs:
        lengths = [e["tokens"] for e in run["lengths"]]
        for r in run["targets"]:
            rows = [e["summary"][f"{r:g}"] for e in run["lengths"]]
            for n_tok, row in zip(lengths, rows, strict=True):
                print_row(run["model"], n_tok, r, row)
                summary.append({"model": run["model"], "tokens": n_tok, "target": r, **row})
            for m in METHODS:
                fit = fit_power_law(lengths, [row[f"{m}_density"] for row in rows])
                extra = {}
                if fit["b"] is not None:
                    extra = {str(n): min(1.0, fit["a"] * n ** -fit["b"]) for n in EXTRAPOLATE_TO if n > max(lengths)}
                fits.append({"model": run["model"], "target": r, "method": m, "fit_lengths": lengths, **fit, "extrapolation": extra})
    print("\nfit density = a * L^-b on the measured lengths; values past the longest measured length are EXTRAPOLATIONS")
    print(f"{'model':>24} {'r':>5} {'method':>10} {'a':>9} {'b':>6} {'rms':>6} " + " ".join(f"{'@' + str(n // 1024) + 'K':>8}" for n in EXTRAPOLATE_TO))
    for f in fits:
        if f["b"] is None:
            continue
        ext = " ".join(f"{f['extrapolation'].get(str(n), float('nan')):8.3f}" for n in EXTRAPOLATE_TO)
        print(f"{f['model']:>24} {f['target']:>5g} {f['method']:>10} {f['a']:9.3g} {f['b']:6.3f} {f['rms_log_residual']:6.3f} {ext}")
    per_layer = [layer_table(run) for run in runs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    merged = {
        "bench": "xattn_density",
        "definitions": __doc__.split("``report``")[0].strip(),
        "summary": summary,
        "fits": fits,
        "per_layer": per_layer,
        "fit_note": "density = a * L^-b, least squares in log-log on the measured lengths; 'extrapolation' values lie past the longest measured length and are not measurements",
        "runs": runs,
    }
    (out / "xattn_density.json").write_text(json.dumps(merged, indent=1))
    print(f"wrote {out / 'xattn_density.json'}")
    try:
        import matplotlib
    except ImportError:  # the GPU machine's carried site-packages: re-plot here from the JSON
        print("matplotlib not installed: no PNG (run `report xattn_density.json` where it is)")
        return
    matplotlib.use("Agg")
    plot(runs, fits, out / "xattn_density.png")
    print(f"wrote {out / 'xattn_density.png'}")


def layer_table(run: dict[str, Any]) -> dict[str, Any]:
    """Density per layer (mean over prompts and heads) at the longest length, each method and target."""
    entry = run["lengths"][-1]
    nqb = entry["tokens"] // run["block_size"]
    causal = nqb * (nqb + 1) // 2
    rows: dict[str, Any] = {"model": run["model"], "tokens": entry["tokens"], "layers": {}}
    for r in run["targets"]:
        key = f"{r:g}"
        print(f"\n{run['model']} at {entry['tokens']} tokens, r={key}: density per layer (xattn / oracle / stream) and mean tau")
        for layer in run["full_attention_layers"]:
            items = [lay[key] for lay in entry["layers"] if lay["layer"] == layer]
            heads = sum(len(i["tau"]) for i in items)
            dens = {m: sum(sum(i["blocks"][m]) for i in items) / (heads * causal) for m in ("xattn", "oracle", "stream")}
            tau = sum(sum(i["tau"]) for i in items) / heads
            rows["layers"].setdefault(str(layer), {})[key] = {**dens, "mean_tau": tau}
            print(f"  layer {layer:>2}: {dens['xattn']:.3f} / {dens['oracle']:.3f} / {dens['stream']:.3f}  tau {tau:.2f}")
    return rows


def plot(runs: list[dict[str, Any]], fits: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    colors = {"oracle": "tab:green", "xattn": "tab:blue", "stream": "tab:red", "oracle_row": "tab:olive"}
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 5), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        lengths = [e["tokens"] for e in run["lengths"]]
        for r, style in zip(run["targets"], ("-", "--", ":"), strict=False):
            for m in ("oracle", "xattn", "stream"):
                ys = [e["summary"][f"{r:g}"][f"{m}_density"] for e in run["lengths"]]
                ax.plot(lengths, ys, "o" + style, color=colors[m], label=f"{m} r={r:g}")
                fit = next(f for f in fits if f["model"] == run["model"] and f["target"] == r and f["method"] == m)
                if fit["b"] is not None:
                    xs = [max(lengths), *[n for n in EXTRAPOLATE_TO if n > max(lengths)]]
                    ax.plot(xs, [min(1.0, fit["a"] * n ** -fit["b"]) for n in xs], style, color=colors[m], alpha=0.35, lw=1)
        ax.axvspan(max(lengths), EXTRAPOLATE_TO[-1], color="grey", alpha=0.08)
        ax.text(max(lengths) * 1.1, 0.75, "extrapolation\n(power-law fit)", fontsize=8, color="grey", va="top")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(0.01, 1.0)
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel("density (kept / causal 128x128 blocks)")
        layers = run["full_attention_layers"]
        ax.set_title(
            f"{run['model']}: {len(layers)} full-attention layers x {run['num_heads']} heads, S={run['stride']}\n"
            f"{run['device']}, {run['dtype'].replace('torch.', '')}, {run['prompts']} prompt(s)",
            fontsize=9,
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.suptitle("Density needed for attention recall r on real prompts (oracle = lower bound; stream = sink + recent)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="capture one model at several lengths")
    m.add_argument("--model", default=None, help="local HF model dir (default: packaged SmolLM2-135M-Instruct)")
    m.add_argument("--lengths", default="1024,2048", help="prompt tokens, multiples of --block")
    m.add_argument("--targets", default="0.9,0.95", help="recall targets r")
    m.add_argument("--stride", type=int, default=16)
    m.add_argument("--block", type=int, default=128)
    m.add_argument("--prompts", type=int, default=1, help="disjoint prompts per length (the same prompts, truncated)")
    m.add_argument("--text-file", default=None, help="split this text into --prompts prompts instead of ../shared/data")
    m.add_argument("--bos", action="store_true", help="make sure each prompt starts with BOS (Gemma-3)")
    m.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    m.add_argument("--eval-table", default=None, help="also measure this shipped table's density and recall (out of sample)")
    m.add_argument("--estimate", default="auto", choices=("auto", "torch"), help="torch: estimate/select on CPU even with a CUDA capture")
    m.add_argument("--chunk", type=int, default=0, help="query tokens per true-mass step (0: 4096 on CUDA, 1024 on CPU)")
    m.add_argument("--table-target", type=float, default=0.95)
    m.add_argument("--table-min-len", type=int, default=8192)
    m.add_argument("--table-out", default=None, help="also write the per-head tau table here")
    m.add_argument("--out", required=True, help="per-model JSON")
    m.set_defaults(func=measure)
    r = sub.add_parser("report", help="merge per-model JSONs, fit, plot")
    r.add_argument("inputs", nargs="+")
    r.add_argument("--out", default="bench/results/xattn_density")
    r.set_defaults(func=report)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
