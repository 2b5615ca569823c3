"""What loading the sampling-verify logits processor costs on a GPU: vLLM 0.26+ runs its V1 model runner
instead of V2 whenever a custom logits processor is configured (``StackSettings.sampling_verify``).

    python bench/vllm_runner_cost.py --model DIR [--out bench/results/verify/vllm_runner_cost.json]

Each variant runs in its own process (a fresh engine): ``v2_default`` (no processor: vLLM's choice) and
``with_verify_processor`` (``logits_processors=[server.engine.verify.PROCESSOR_FQCN]``). Measured per variant,
after a warm-up: a decode batch (256 requests x 128-token random prompts, 256 sampled tokens each,
ignore_eos) and a prefill batch (8 x 7936-token prompts, 1 token). Prints a table with the ratios and
writes JSON. Prefix caching off so both variants compute the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("v2_default", "with_verify_processor")


def child(variant: str, model: str) -> dict:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import random

    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from server.engine.verify import PROCESSOR_FQCN

    kw = {"logits_processors": [PROCESSOR_FQCN]} if variant == "with_verify_processor" else {}
    llm = LLM(model=model, max_model_len=8192, gpu_memory_utilization=0.5, enable_prefix_caching=False, seed=0, **kw)
    cfg = llm.llm_engine.vllm_config
    runner_v2 = bool(getattr(cfg, "use_v2_model_runner", False))
    rng = random.Random(0)

    def prompts(n: int, length: int) -> list[TokensPrompt]:
        return [TokensPrompt(prompt_token_ids=[rng.randrange(100, 40000) for _ in range(length)]) for _ in range(n)]

    decode_p = SamplingParams(temperature=0.8, max_tokens=256, ignore_eos=True, seed=1)
    llm.generate(prompts(32, 128), decode_p, use_tqdm=False)  # warm-up
    rows = {}
    for name, ps, sp in (("decode_256x256", prompts(256, 128), decode_p),
                         ("prefill_8x7936", prompts(8, 7936), SamplingParams(max_tokens=1))):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            outs = llm.generate(ps, sp, use_tqdm=False)
            times.append(time.perf_counter() - t0)
        toks = sum(len(o.outputs[0].token_ids) for o in outs) if name.startswith("decode") else sum(
            len(p["prompt_token_ids"]) for p in ps)
        rows[name] = {"seconds": times, "best_s": min(times), "tokens": toks, "tokens_per_s": toks / min(times)}
    return {"variant": variant, "vllm": vllm.__version__, "use_v2_model_runner": runner_v2, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", type=Path, default=Path("bench/results/verify/vllm_runner_cost.json"))
    ap.add_argument("--child", choices=VARIANTS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.model)), flush=True)
        return 0
    results = {}
    for v in VARIANTS:
        proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", v],
                              capture_output=True, text=True, timeout=400)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"{v}: no result (rc {proc.returncode})")
        results[v] = json.loads(line[7:])
    base, ours = results["v2_default"], results["with_verify_processor"]
    print(f"{'workload':<16} {'v2_default tok/s':>18} {'with processor tok/s':>22} {'ratio':>7}")
    ratios = {}
    for name in base["rows"]:
        a, b = base["rows"][name]["tokens_per_s"], ours["rows"][name]["tokens_per_s"]
        ratios[name] = b / a
        print(f"{name:<16} {a:>18.0f} {b:>22.0f} {b / a:>7.3f}")
    print(f"model runner: v2_default use_v2={base['use_v2_model_runner']}, "
          f"with processor use_v2={ours['use_v2_model_runner']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "results": results,
                                    "ratio_with_processor_over_default": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
