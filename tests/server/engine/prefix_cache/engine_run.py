"""Run a scripted request sequence through a real offline ``vllm.LLM`` and print the result as JSON.

    python tests/prefix_cache/engine_run.py SCENARIO[,SCENARIO...] MODEL_DIR STATUS_DIR

The caller picks the policy (``XEDGE_PREFIX_CACHE_POLICY``) and whether our plugin loads at all
(``VLLM_PLUGINS``: stock vLLM when it does not name ``xedge_prefix_cache``). The engine runs in this
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), with a 40-block cache of 32-token blocks, so a few
hundred tokens already force evictions. Output, one line: ``XEDGE_RESULT {"cached": {scenario:
[num_cached_tokens per request]}, "policy": <installed policy name or null>}``.

Scenarios (token ids are fixed, so block contents are exact):
- ``order``: conversations that grow turn by turn, interleaved with one-off prompts; under pressure the
  cached-token count of every request depends on which blocks were evicted before it.
- ``pin``: a 128-token system prompt sent with pin metadata, a flood of one-off prompts bigger than the
  cache, then the system prompt again with a new question.
"""

from __future__ import annotations

import json
import os
import random
import sys

BLOCK = 32
NUM_BLOCKS = 40


def _tokens(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1000, 40000) for _ in range(n)]


def order_scenario() -> list[tuple[list[int], dict | None]]:
    rng = random.Random(7)
    system = _tokens(rng, 2 * BLOCK)
    conversations = [system + _tokens(rng, 3 * BLOCK + 5) for _ in range(4)]
    prompts: list[tuple[list[int], dict | None]] = []
    for turn in range(4):
        for c, history in enumerate(conversations):
            if (turn + c) % 3 == 0:
                prompts.append((_tokens(rng, 6 * BLOCK + 3), None))  # a one-off prompt
            history.extend(_tokens(rng, BLOCK + 11))
            prompts.append((list(history), None))
    return prompts


def pin_scenario() -> list[tuple[list[int], dict | None]]:
    rng = random.Random(11)
    system = _tokens(rng, 4 * BLOCK)
    pin = {"xedge_category": "system", "xedge_pin_ttl_s": 3600, "xedge_pin_tokens": 4 * BLOCK}
    prompts: list[tuple[list[int], dict | None]] = [(system + _tokens(rng, 20), pin)]
    for _ in range(8):  # 8 x 8 blocks > the 39 usable blocks
        prompts.append((_tokens(rng, 8 * BLOCK + 1), {"xedge_category": "oneoff"}))
    prompts.append((system + _tokens(rng, 20), pin))
    return prompts


SCENARIOS = {"order": order_scenario, "pin": pin_scenario}


def main() -> None:
    scenarios, model_dir, status_dir = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    os.environ["XEDGE_STATUS_DIR"] = status_dir
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(
        model=model_dir,
        max_model_len=1024,
        block_size=BLOCK,
        num_gpu_blocks_override=NUM_BLOCKS,
        enable_prefix_caching=True,
        enforce_eager=True,
        distributed_executor_backend="uni",
        gpu_memory_utilization=0.3,
        max_num_seqs=4,
        seed=0,
    )
    cached: dict[str, list[int]] = {}
    for scenario in scenarios:
        cached[scenario] = []
        for tokens, extra in SCENARIOS[scenario]():
            params = SamplingParams(max_tokens=1, temperature=0.0, extra_args=extra)
            (out,) = llm.generate([TokensPrompt(prompt_token_ids=tokens)], params, use_tqdm=False)
            cached[scenario].append(out.num_cached_tokens)
    policy = None
    try:
        from server.engine.prefix_cache.vllm_adapter import flush_stats, installed_policy

        pool = llm.llm_engine.engine_core.engine_core.scheduler.kv_cache_manager.block_pool
        installed = installed_policy(pool)
        if installed is not None:
            flush_stats(pool)
            installed.check_integrity()
            policy = installed.name
    except AttributeError as exc:  # a vLLM layout we do not know: say so instead of guessing
        policy = f"unknown ({exc})"
    print("XEDGE_RESULT " + json.dumps({"cached": cached, "policy": policy}), flush=True)


if __name__ == "__main__":
    main()
