"""vLLM on one GPU: time to first token with our XAttention backend vs vLLM's FLASH_ATTN (FlashAttention 3),
and a greedy-output equality check (tau = 1) on a small random model. One backend per process.

    python bench/vllm_ttft.py ttft  --backend FLASH_ATTN|xattn --lens 32768,65536,131000 --out F.json
    python bench/vllm_ttft.py equal --backend FLASH_ATTN|xattn --model /tmp/model --out F.json
    python bench/vllm_ttft.py compare A.json B.json   # equality of the two 'equal' runs
    --tp 2: tensor parallel, one worker process per GPU (bench/h200/tp2.sh)

The model of ``ttft`` is Llama-3.1-8B-shaped with ``load_format="dummy"`` (random weights, no files).
The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that ``xattn`` can register
the backend (``attention_backend.vllm.plugin.register``, the plugin entry point) here and read its
counters (``attention_backend.vllm.common.STATS``: decisions, estimated density) afterwards. With ``--tp`` > 1
the impl runs in the worker processes, which find the backend through the plugin entry point (select it
with ``VLLM_PLUGINS``) and report through their status markers (``XEDGE_STATUS_DIR``, one per worker).
``bench/h200/ttft.sh`` (``tp2.sh`` for TP=2) is the exact device sequence; results and notes in
``bench/results/vllm_ttft/notes.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

LLAMA8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
}


def make_llm(backend: str, model: str, max_len: int, xattn: dict[str, Any], tp: int = 1, **kw: Any) -> Any:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if tp > 1:  # plain NCCL all-reduce: no custom / symmetric-memory all-reduce (NVLink multicast stays off)
        os.environ["VLLM_ALLREDUCE_USE_SYMM_MEM"] = "0"
        kw.update(tensor_parallel_size=tp, distributed_executor_backend="mp", disable_custom_all_reduce=True)
    from vllm import LLM

    if backend == "xattn":
        from attention_backend.vllm import plugin

        plugin.register()
        kw["attention_backend"] = "FLASH_ATTN"  # resolved to our override
        kw["additional_config"] = {"xattn": xattn}
    else:
        kw["attention_backend"] = backend
    return LLM(model=model, max_model_len=max_len, dtype="bfloat16", enable_prefix_caching=False, **kw)


def xattn_stats() -> dict[str, Any]:
    """This process's counters; plus, where ``XEDGE_STATUS_DIR`` is set, every worker's impl and stats markers."""
    mod = sys.modules.get("attention_backend.vllm.common")
    stats = {} if mod is None else mod.STATS.as_dict()
    status = os.environ.get("XEDGE_STATUS_DIR")
    if status:
        from client_edge.protocol.status_marker import read_markers

        for event in ("impl", "stats"):
            stats[f"workers_{event}"] = {m.pid: m.detail for m in read_markers(Path(status), f"attention.{event}.*.json")}
    return stats


def ttft(args: argparse.Namespace) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    Path("/tmp/l8b").mkdir(exist_ok=True)
    Path("/tmp/l8b/config.json").write_text(json.dumps(LLAMA8B))
    lens = [int(x) for x in args.lens.split(",")]
    xattn = {"threshold": args.tau, "stride": args.stride, "min_sparse_len": args.min_len}
    if args.dense_above is not None:
        xattn["dense_above"] = args.dense_above
    if args.sparse_kernel:
        xattn["sparse_kernel"] = args.sparse_kernel
    if args.estimate_fp8:
        xattn["estimate_fp8"] = True
    t = time.time()
    kw = {"block_size": args.block_size} if args.block_size else {}
    llm = make_llm(args.backend, "/tmp/l8b", max(lens) + 64, xattn, args.tp, load_format="dummy",
                   skip_tokenizer_init=True, gpu_memory_utilization=0.85, enforce_eager=False, **kw)
    init_s = time.time() - t
    rng = random.Random(0)

    def mk(n: int) -> Any:
        return TokensPrompt(prompt_token_ids=[rng.randrange(1000, 120000) for _ in range(n)])

    one = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    llm.generate([mk(8192)], one, use_tqdm=False)
    res: dict[str, Any] = {
        "backend": args.backend, "init_s": init_s, "xattn": xattn, "block_size": args.block_size, "tp": args.tp,
        "ttft_s": {},
    }
    for n in lens:
        ts = []
        for _ in range(2):
            p = mk(n)
            t = time.perf_counter()
            llm.generate([p], one, use_tqdm=False)
            ts.append(time.perf_counter() - t)
        res["ttft_s"][n] = ts
        print(f"[ttft] backend={args.backend} len={n} TTFT s: " + " ".join(f"{x:.3f}" for x in ts), flush=True)
    res["xattn_stats"] = xattn_stats()
    return res


def equal(args: argparse.Namespace) -> dict[str, Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    # tau = 1 and a small min length: every prefill row of >= 512 tokens takes the sparse kernels,
    # in chunks of 1024 new tokens that attend to the paged cache.
    # dense_above 1: density 1.0 is not above it, so every candidate row really runs the sparse kernel
    # (decodes and the 40-token prompt run FA3 on their rows alone: the mixed-batch path).
    xattn = {"threshold": 1.0, "stride": 8, "min_sparse_len": 512, "dense_above": 1.0, "min_sparse_ms": 0.0}
    if args.sparse_kernel:
        xattn["sparse_kernel"] = args.sparse_kernel
    kw = {"block_size": args.block_size} if args.block_size else {}
    llm = make_llm(args.backend, args.model, 8192, xattn, args.tp, gpu_memory_utilization=0.3, enforce_eager=True,
                   max_num_batched_tokens=1024, seed=0, **kw)
    rng = random.Random(1)
    prompts = [TokensPrompt(prompt_token_ids=[rng.randrange(100, 49000) for _ in range(n)]) for n in (3000, 1500, 700, 40)]
    # logprobs=2: each step's top-1 minus top-2 log-probability, so a divergence can be read as a near tie
    # flipped by rounding (a margin of a few 1e-3) or not
    sp = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, logprobs=2)
    outs = llm.generate(prompts, sp, use_tqdm=False)
    margins = [[_top2_gap(step) for step in (o.outputs[0].logprobs or [])] for o in outs]
    return {"backend": args.backend, "block_size": args.block_size, "tp": args.tp, "tokens": [list(o.outputs[0].token_ids) for o in outs],
            "margins": margins, "xattn_stats": xattn_stats()}


def _top2_gap(step: dict[int, Any]) -> float:
    """Top-1 minus top-2 log-probability of one decode step (vLLM's ``{token_id: Logprob}``)."""
    top = sorted((lp.logprob for lp in step.values()), reverse=True)
    return float(top[0] - top[1]) if len(top) > 1 else float("inf")


def compare(a_path: str, b_path: str) -> dict[str, Any]:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    rows = []
    for ta, tb in zip(a["tokens"], b["tokens"], strict=True):
        same = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=True)) if x != y), len(ta))
        row = {"equal": ta == tb, "matching_prefix": same, "n": len(ta)}
        if same < len(ta) and a.get("margins") and b.get("margins"):  # how close each run's top-2 were there
            row["margin_at_divergence"] = {"a": a["margins"][len(rows)][same], "b": b["margins"][len(rows)][same]}
        rows.append(row)
    return {"a": a["backend"], "b": b["backend"], "prompts": rows, "all_equal": all(r["equal"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["ttft", "equal", "compare"])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--backend", default="FLASH_ATTN")
    ap.add_argument("--lens", default="32768,65536,131000")
    ap.add_argument("--tau", type=float, default=0.9)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--min-len", type=int, default=8192)
    ap.add_argument("--dense-above", type=float, default=None, help="xattn dense_above (default: the card's break-even)")
    ap.add_argument("--model", default="/tmp/model")
    ap.add_argument("--block-size", type=int, default=0, help="vLLM KV block size (0: vLLM's default)")
    ap.add_argument("--sparse-kernel", choices=["auto", "fa3", "triton"], default=None,
                    help="xattn sparse_kernel (default: the config default)")
    ap.add_argument("--estimate-fp8", action="store_true", help="xattn estimate_fp8 (the grouped library GEMM at S >= 16)")
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size (> 1: one worker process per GPU)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.mode == "ttft":
        res = ttft(args)
    elif args.mode == "equal":
        res = equal(args)
    else:
        res = compare(*args.files)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print("[vllm_ttft] RESULT", json.dumps(res)[:2000], flush=True)


if __name__ == "__main__":
    main()
