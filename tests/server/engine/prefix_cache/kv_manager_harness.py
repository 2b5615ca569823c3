"""Drive vLLM's real KVCacheManager / BlockPool the way the scheduler does, without a model.

Each request: prefix lookup (get_computed_blocks), allocation of its prompt (allocate_slots), caching,
then free. The spy records, for every allocation, the blocks vLLM returned and the blocks stock vLLM
would have returned (the head of the free queue just before the call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BLOCK = 16


@dataclass
class Run:
    cached_tokens: list[int] = field(default_factory=list)
    allocations: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (got, stock head)


def make_manager(num_blocks: int) -> Any:
    import torch
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec

    spec = FullAttentionSpec(block_size=BLOCK, num_kv_heads=1, head_size=8, dtype=torch.float32)
    config = KVCacheConfig(
        num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(["layer.0"], spec)]
    )
    return KVCacheManager(
        config, max_model_len=4096, scheduler_block_size=BLOCK, hash_block_size=BLOCK, enable_caching=True
    )


def run_sequence(
    manager: Any, prompts: list[tuple[list[int], dict | None]], computing: Callable[[], None] | None = None
) -> Run:
    """``computing``: called while each request holds its blocks (between caching and free), e.g. to
    advance a fake clock by the time an engine spends on the request."""
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.request import Request

    init_none_hash(sha256)
    hasher = get_request_block_hasher(BLOCK, sha256)
    pool = manager.block_pool
    run = Run()
    original = type(pool).get_new_blocks

    def spy(n: int) -> list:
        head = [b.block_id for b in pool.free_block_queue.get_all_free_blocks()[:n]]
        got = original(pool, n)
        run.allocations.append(([b.block_id for b in got], head))
        return got

    pool.get_new_blocks = spy
    for i, (tokens, extra) in enumerate(prompts):
        params = SamplingParams(max_tokens=1, extra_args=extra)
        req = Request(f"r{i}", tokens, params, None, block_hasher=hasher)
        blocks, hit_tokens = manager.get_computed_blocks(req)[:2]
        if hasattr(manager, "record_prefix_cache_stats"):  # the scheduler's call from vLLM 0.27 on;
            manager.record_prefix_cache_stats(req, hit_tokens)  # 0.26 counts inside get_computed_blocks
        new = manager.allocate_slots(req, len(tokens) - hit_tokens, hit_tokens, blocks)
        assert new is not None, f"request {i} did not fit"
        req.num_computed_tokens = len(tokens)
        manager.cache_blocks(req, len(tokens))
        if computing is not None:
            computing()
        manager.free(req)
        run.cached_tokens.append(hit_tokens)
    return run
