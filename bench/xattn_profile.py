"""Where a long prefill's time goes inside vLLM, dense FLASH_ATTN vs XAttention (torch profiler, one process).

Runs one prompt of ``--len`` tokens (real text from the carried haystack file, or token ids of a retrieval
suite) through ``vllm.LLM`` in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), three timed runs, then one run
under ``torch.profiler`` (CPU + CUDA). Prints TTFT and the top operators by self CPU time and by self CUDA
time, plus the host-sync count (``cudaStreamSynchronize`` / device-to-host copies), so a per-layer fixed
cost shows as CPU time the GPU waits for.

    python3 bench/xattn_profile.py --model DIR --haystack FILE --len 32000 --backend xattn --out prof.txt
    python3 bench/xattn_profile.py --model DIR --suite /tmp/suite_smol.json --len 32000 --max-model-len 128064 ...
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--haystack", help="text file: its tokens repeated to --len")
    ap.add_argument("--suite", help="a retrieval suite JSON (bench/xattn_retrieval.py suite): its first prompt of --len")
    ap.add_argument("--max-model-len", type=int, default=None, help="default: --len + 64")
    ap.add_argument("--len", type=int, default=32000)
    ap.add_argument("--backend", default="FLASH_ATTN", choices=["FLASH_ATTN", "xattn"])
    ap.add_argument("--xattn", default="{}", help="JSON: the xattn additional_config section")
    ap.add_argument("--max-batched", type=int, default=None, help="max_num_batched_tokens (chunk size)")
    ap.add_argument("--eager", action="store_true", help="enforce_eager (default: torch.compile + CUDA graphs)")
    ap.add_argument("--cprofile", action="store_true", help="also one run under cProfile (host time per function)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    import torch
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    kw: dict = {"attention_backend": "FLASH_ATTN"}
    if args.backend == "xattn":
        from attention_backend.vllm import plugin

        plugin.register()
        kw["additional_config"] = {"xattn": json.loads(args.xattn)}
    if args.max_batched:
        kw["max_num_batched_tokens"] = args.max_batched
    if bool(args.haystack) == bool(args.suite):
        ap.error("give exactly one of --haystack and --suite")
    if args.suite:
        items = [i for i in json.loads(Path(args.suite).read_text())["items"] if i["length"] == args.len]
        if not items:
            ap.error(f"--suite has no prompt of --len {args.len}")
        ids = items[0]["prompt_token_ids"]
    else:
        tok = AutoTokenizer.from_pretrained(args.model)
        ids = tok(Path(args.haystack).read_text(), add_special_tokens=False)["input_ids"]
        ids = (ids * (args.len // len(ids) + 1))[: args.len]
    max_len = args.max_model_len or args.len + 64
    if max_len < len(ids) + 1:
        ap.error(f"--max-model-len {max_len} is shorter than the prompt ({len(ids)} tokens) + 1")
    llm = LLM(model=args.model, dtype="bfloat16", max_model_len=max_len, block_size=128,
              enable_prefix_caching=False, enforce_eager=args.eager, gpu_memory_utilization=0.8, seed=0, **kw)  # fmt: skip
    one = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)

    def once() -> float:
        t = time.perf_counter()
        llm.generate([TokensPrompt(prompt_token_ids=ids)], one, use_tqdm=False)
        return time.perf_counter() - t

    ttft = [once() for _ in range(4)]
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        once()
    ka = prof.key_averages()
    src = f"suite={args.suite}" if args.suite else f"haystack={args.haystack}"
    lines = [f"backend={args.backend} len={args.len} max_model_len={max_len} {src} xattn={args.xattn} "
             f"ttft_s={[round(x, 4) for x in ttft]}"]  # fmt: skip
    lines.append(ka.table(sort_by="self_cpu_time_total", row_limit=30))
    lines.append(ka.table(sort_by="self_device_time_total", row_limit=25))
    syncs = {e.key: e.count for e in ka if "Synchronize" in e.key or "DtoH" in e.key or e.key == "aten::item"}
    lines.append(f"host syncs: {syncs}")
    if args.cprofile:  # where the host's time goes, per Python function (one more run, under cProfile)
        import cProfile
        import io
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        once()
        pr.disable()
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats(key).print_stats(45)
            lines.append(f"cProfile by {key}:\n{buf.getvalue()}")
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(lines[0], "\n", f"host syncs: {syncs}", flush=True)


if __name__ == "__main__":
    main()
