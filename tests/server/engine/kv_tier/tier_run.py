"""Run a scripted request sequence through a real offline ``vllm.LLM`` (CPU) with or without the host KV tier,
and print the result as JSON (``XEDGE_RESULT {...}``).

    python tests/server/engine/kv_tier/tier_run.py MODEL_DIR STATUS_DIR HOST_BLOCKS   # 0: no tier

A 40-block cache of 32-token blocks; three long prompts (6 blocks and a bit each), a flood of one-off prompts
bigger than the cache, then each long prompt again with a new question: with the tier their prefixes load back
(``num_cached_tokens``), without it they are recomputed. Greedy decoding of 4 tokens, logprobs of the first,
so the caller can check that loaded KV gives the same answer as computed KV.
"""

from __future__ import annotations

import json
import os
import random
import sys

BLOCK = 32
NUM_BLOCKS = 40


def scenario() -> list[list[int]]:
    rng = random.Random(5)
    longs = [[rng.randrange(1000, 40000) for _ in range(6 * BLOCK + 7)] for _ in range(3)]
    flood = [[rng.randrange(1000, 40000) for _ in range(8 * BLOCK + 1)] for _ in range(7)]  # 56 blocks > 39
    again = [p + [rng.randrange(1000, 40000) for _ in range(20)] for p in longs]
    return longs + flood + again


def main() -> None:
    model_dir, status_dir, host_blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["XEDGE_STATUS_DIR"] = status_dir
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    kw = {}
    if host_blocks:
        from server.engine.kv_tier.config import kv_transfer_config

        kw["kv_transfer_config"] = kv_transfer_config(host_blocks)
    llm = LLM(model=model_dir, max_model_len=1024, block_size=BLOCK, num_gpu_blocks_override=NUM_BLOCKS,
              enable_prefix_caching=True, enforce_eager=True, distributed_executor_backend="uni",
              max_num_seqs=4, seed=0, dtype="float32", gpu_memory_utilization=0.3, **kw)  # fmt: skip
    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=1)
    rows = []
    for tokens in scenario():
        (out,) = llm.generate([TokensPrompt(prompt_token_ids=tokens)], params, use_tqdm=False)
        first = out.outputs[0].logprobs[0]
        tok = out.outputs[0].token_ids[0]
        rows.append({"prompt": len(tokens), "cached": out.num_cached_tokens, "tokens": list(out.outputs[0].token_ids),
                     "first_logprob": first[tok].logprob})  # fmt: skip
    stats = None
    if host_blocks:
        conn = llm.llm_engine.engine_core.engine_core.scheduler.connector
        stats = conn.stats()
    print("XEDGE_RESULT " + json.dumps({"rows": rows, "tier": stats}), flush=True)


if __name__ == "__main__":
    main()
