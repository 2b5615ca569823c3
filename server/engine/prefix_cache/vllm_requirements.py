"""What ``server.engine.prefix_cache.vllm_adapter`` relies on in vLLM (checked by ``vllm_contract``; no vLLM import).

Every symbol the adapter patches, calls or reads is listed; ``source`` entries pin the behaviour the
eviction hook depends on (vLLM's ``get_new_blocks`` pops the head of the free queue; ``free_blocks``
puts cached blocks at the tail and uncached ones at the head). Optional entries are version
differences the adapter handles; the matrix per version is in docs/vllm_versions.md.
"""

from __future__ import annotations

from attention_backend.vllm.contract import Requirement

_POOL = "vllm.v1.core.block_pool"
_UTILS = "vllm.v1.core.kv_cache_utils"
_MANAGER = "vllm.v1.core.kv_cache_manager"

REQUIREMENTS: tuple[Requirement, ...] = (
    # plugin loading: our entry point group, called in every process
    Requirement("name", "vllm.plugins", "DEFAULT_PLUGINS_GROUP"),
    Requirement("source", "vllm.plugins", "load_general_plugins", snippet="func()"),
    Requirement("name", "vllm.envs", "VLLM_PLUGINS"),
    # BlockPool: the methods we wrap (fixed signatures where our wrapper has one) and state we read
    Requirement("class", _POOL, "BlockPool"),
    Requirement("method", _POOL, "BlockPool.__init__"),
    *(
        Requirement("attr", _POOL, f"BlockPool.{attr}")
        for attr in ("enable_caching", "num_gpu_blocks", "hash_block_size", "free_block_queue", "blocks")
    ),
    Requirement("method", _POOL, "BlockPool.get_new_blocks", ("self", "num_blocks"), exact=True),
    Requirement(
        "source",
        _POOL,
        "BlockPool.get_new_blocks",
        snippet="self.free_block_queue.popleft_n(num_blocks)",
        why="victims are moved to the queue head, which get_new_blocks pops",
    ),
    Requirement(
        "method",
        _POOL,
        "BlockPool.cache_full_blocks",
        ("self", "request", "blocks", "num_cached_blocks", "num_full_blocks"),
    ),
    Requirement("method", _POOL, "BlockPool.touch", ("self", "blocks"), exact=True),
    Requirement("method", _POOL, "BlockPool.free_blocks", ("self", "ordered_blocks"), exact=True),
    Requirement("source", _POOL, "BlockPool.free_blocks", snippet="self.free_block_queue.prepend_n("),
    Requirement("source", _POOL, "BlockPool.free_blocks", snippet="self.free_block_queue.append_n("),
    Requirement("method", _POOL, "BlockPool._maybe_evict_cached_block", ("self", "block"), exact=True),
    Requirement("method", _POOL, "BlockPool.reset_prefix_cache", ("self",), exact=True),
    Requirement(
        "method", _POOL, "BlockPool.move_block_hashes", ("self", "src_block", "dst_block"), exact=True
    ),
    Requirement(
        "method",
        _POOL,
        "BlockPool.unpin_blocks",
        ("self", "blocks", "on_reuse"),
        exact=True,
        optional=True,
        why="absent before vLLM 0.30: no pinned-until-reuse blocks, nothing to wrap",
    ),
    # the free queue and its blocks
    Requirement("class", _UTILS, "FreeKVCacheBlockQueue"),
    Requirement("attr", _UTILS, "FreeKVCacheBlockQueue.num_free_blocks"),
    Requirement("method", _UTILS, "FreeKVCacheBlockQueue.popleft_n", ("self", "n"), exact=True),
    Requirement("method", _UTILS, "FreeKVCacheBlockQueue.remove", ("self", "block"), exact=True),
    Requirement("method", _UTILS, "FreeKVCacheBlockQueue.prepend_n", ("self", "blocks"), exact=True),
    Requirement("class", _UTILS, "KVCacheBlock"),
    *(
        Requirement("attr", _UTILS, f"KVCacheBlock.{attr}")
        for attr in (
            "block_id",
            "ref_cnt",
            "block_hash",
            "block_hash_num_tokens",
            "is_null",
            "prev_free_block",
        )
    ),
    Requirement(
        "attr",
        _UTILS,
        "KVCacheBlock.pool",
        optional=True,
        why="absent before vLLM 0.30: every block belongs to the pool that frees it",
    ),
    # the manager: request metadata around allocation / free, and per-category hit stats
    Requirement("class", _MANAGER, "KVCacheManager"),
    Requirement("attr", _MANAGER, "KVCacheManager.block_pool"),
    Requirement("method", _MANAGER, "KVCacheManager.allocate_slots", ("self", "request")),
    Requirement("method", _MANAGER, "KVCacheManager.free", ("self", "request"), exact=True),
    Requirement(
        "method",
        _MANAGER,
        "KVCacheManager.record_prefix_cache_stats",
        ("self", "request", "num_hits"),
        exact=True,
        optional=True,
        group="hit stats",
        why="vLLM >= 0.27 counts prefix-cache hits here",
    ),
    Requirement(
        "source",
        _MANAGER,
        "KVCacheManager.get_computed_blocks",
        snippet="self.prefix_cache_stats.record(",
        optional=True,
        group="hit stats",
        why="vLLM 0.26 counts prefix-cache hits inside get_computed_blocks",
    ),
    Requirement("method", _MANAGER, "KVCacheManager.get_computed_blocks", ("self", "request")),
    # request metadata: OpenAI vllm_xargs -> SamplingParams.extra_args -> Request.sampling_params
    Requirement("attr", "vllm.sampling_params", "SamplingParams.extra_args"),
    *(
        Requirement("attr", "vllm.v1.request", f"Request.{attr}")
        for attr in ("request_id", "sampling_params", "num_tokens", "skip_reading_prefix_cache")
    ),
    Requirement("attr", "vllm.entrypoints.openai.completion.protocol", "CompletionRequest.vllm_xargs"),
    Requirement(
        "source",
        "vllm.entrypoints.openai.completion.protocol",
        "CompletionRequest.to_sampling_params",
        snippet="extra_args: dict[str, Any] = self.vllm_xargs if self.vllm_xargs else {}",
    ),
    Requirement(
        "attr", "vllm.entrypoints.openai.chat_completion.protocol", "ChatCompletionRequest.vllm_xargs"
    ),
    Requirement(
        "source",
        "vllm.entrypoints.openai.chat_completion.protocol",
        "ChatCompletionRequest.to_sampling_params",
        snippet="self.vllm_xargs",
    ),
)
