"""Request metadata over the OpenAI API: ``vllm_xargs`` -> ``SamplingParams.extra_args`` -> our policy in
EngineCore, on the real `xedge serve` stack (vLLM server, 40 blocks of 32 tokens, policy ``workload``).

A system prompt sent with ``xedge_pin_ttl_s`` survives a flood of one-off prompts that fills the cache
many times over; vLLM's own ``usage.prompt_tokens_details.cached_tokens`` shows it.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
import pytest

from tests.vllm_utils import start_stack

pytestmark = pytest.mark.vllm

BLOCK = 32


def _complete(client: httpx.Client, url: str, model: str, tokens: list[int], xargs: dict) -> int:
    body = {"model": model, "prompt": tokens, "max_tokens": 1, "temperature": 0.0, "vllm_xargs": xargs}
    response = client.post(f"{url}/v1/completions", json=body)
    assert response.status_code == 200, response.text
    details = response.json()["usage"].get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def _stats_after(status_dir: Path, done, timeout_s: float = 15.0) -> dict:
    """The EngineCore rewrites its stats marker every second: wait (bounded) for one that shows ``done``."""
    deadline = time.monotonic() + timeout_s
    detail: dict = {}
    while time.monotonic() < deadline:
        for path in status_dir.glob("prefix_cache.stats.*.json"):
            detail = json.loads(path.read_text())["detail"]
            if done(detail):
                return detail
        time.sleep(0.2)
    raise AssertionError(f"no stats marker reached the expected state in {timeout_s} s; last: {detail}")


def test_pin_metadata_from_the_openai_api_reaches_the_policy(tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed")
    rng = random.Random(5)
    system = [rng.randrange(1000, 40000) for _ in range(4 * BLOCK)]
    pin = {"xedge_category": "system", "xedge_pin_ttl_s": 3600, "xedge_pin_tokens": 4 * BLOCK}
    with (
        start_stack(
            tmp_path,
            router=False,
            prefix_cache_policy="workload",
            block_size=BLOCK,
            num_blocks_override=40,
            max_model_len=1024,
        ) as stack,
        httpx.Client(timeout=120) as client,
    ):
        url, model = stack.vllm_url, stack.served_model_name
        assert _complete(client, url, model, system + [7, 8, 9], pin) == 0
        for _ in range(8):
            flood = [rng.randrange(1000, 40000) for _ in range(8 * BLOCK + 1)]
            _complete(client, url, model, flood, {"xedge_category": "oneoff"})
        assert _complete(client, url, model, system + [10, 11], pin) == 4 * BLOCK
        bad = client.post(
            f"{url}/v1/completions",
            json={
                "model": model,
                "prompt": [1, 2, 3],
                "max_tokens": 1,
                "vllm_xargs": {"xedge_pin_ttl_s": -5},
            },
        )
        assert (
            bad.status_code == 200
        )  # vLLM does not validate our keys; the engine logs, counts, uses defaults
        metrics = client.get(f"{url}/metrics").text
        assert "vllm:prefix_cache_hits" in metrics
        detail = _stats_after(stack.status_dir, lambda d: d.get("invalid_meta") == 1)
    assert detail["policy"] == "workload"
    assert detail["categories"]["system"]["hit_tokens"] == 4 * BLOCK
    assert detail["categories"]["oneoff"]["requests"] == 8
    assert detail["invalid_meta"] == 1
