"""Runs one offline vLLM engine on CPU with our plugins and writes greedy token ids as JSON.

Used by test_xattn_vllm.py in a subprocess (one engine per process, so each run gets a clean vLLM):
    python xattn_vllm_run.py SPEC.json OUT.json
SPEC: {"model": dir, "additional_config": {...}, "rounds": [[str | [int]]], "max_tokens": int, "max_model_len": int,
       "enable_prefix_caching": bool, "tensor_parallel_size": int, "skip_tokenizer_init": bool}; each round is one
       generate() call (a later round can hit the prefix cache of an earlier one); a prompt is a text or a list
       of token ids (a model without a tokenizer: skip_tokenizer_init, greedy to max_tokens ignoring EOS).
       tensor_parallel_size > 1 runs one worker process per rank (vLLM's "mp" executor);
       "kv_cache_memory_bytes" (per worker) replaces the 0.3 memory share that sizes the KV cache.
"""

from __future__ import annotations

import json
import os
import sys


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    from vllm import LLM, SamplingParams

    tp = spec.get("tensor_parallel_size", 1)
    no_tokenizer = spec.get("skip_tokenizer_init", False)
    llm = LLM(
        model=spec["model"],
        dtype="float32",
        enforce_eager=True,
        tensor_parallel_size=tp,
        distributed_executor_backend="mp" if tp > 1 else "uni",
        skip_tokenizer_init=no_tokenizer,
        gpu_memory_utilization=0.3,
        max_model_len=spec["max_model_len"],
        max_num_batched_tokens=spec["max_model_len"],
        enable_prefix_caching=spec.get("enable_prefix_caching", False),
        additional_config=spec["additional_config"],
        seed=0,
        **({"kv_cache_memory_bytes": spec["kv_cache_memory_bytes"]} if "kv_cache_memory_bytes" in spec else {}),
    )
    params = SamplingParams(
        temperature=0.0, max_tokens=spec["max_tokens"], detokenize=not no_tokenizer, ignore_eos=no_tokenizer
    )
    rounds = [
        llm.generate([p if isinstance(p, str) else {"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        for prompts in spec["rounds"]
    ]
    result = {
        "token_ids": [[list(o.outputs[0].token_ids) for o in outs] for outs in rounds],
        "prompt_lens": [[len(o.prompt_token_ids) for o in outs] for outs in rounds],
        "cached_tokens": [[o.num_cached_tokens or 0 for o in outs] for outs in rounds],
        "text": [[o.outputs[0].text for o in outs] for outs in rounds],
        "pid": os.getpid(),
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
