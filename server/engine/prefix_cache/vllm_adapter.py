"""vLLM plugin: our eviction policy decides which free cached block vLLM's ``BlockPool`` evicts.

The only module of ``server.engine.prefix_cache`` that imports vLLM. ``register()`` is the
``vllm.general_plugins`` entry point ``xedge_prefix_cache``; vLLM calls it in every process, and the
patches matter in EngineCore, where the ``BlockPool`` lives. The policy is named by
``XEDGE_PREFIX_CACHE_POLICY`` (default ``lru``), read when a ``BlockPool`` is built.

How it hooks in (``vllm.v1.core.block_pool.BlockPool``, vLLM 0.26 - 0.33): vLLM keeps one free queue in which
blocks without a hash sit at the head and free cached blocks follow in LRU order; ``get_new_blocks(n)``
pops the head. We keep that invariant and, when an allocation must evict ``k`` cached blocks, ask the
policy for ``k`` victims, move them right behind the uncached head blocks, and let vLLM's own
``get_new_blocks`` pop, evict and count them. Cost per allocation: O(blocks allocated), never O(pool).
The policy learns about blocks through ``cache_full_blocks`` (cached), ``touch`` (hit), ``free_blocks``
(freed: candidate), ``_maybe_evict_cached_block`` / ``reset_prefix_cache`` / ``move_block_hashes``
(dropped). Request metadata (``SamplingParams.extra_args``, see ``request_meta``) reaches the touch and
free events through ``KVCacheManager.allocate_slots`` / ``free``, which we wrap to note the request.

Versions: ``register()`` first checks the installed vLLM against ``vllm_requirements.REQUIREMENTS`` and
raises ``VllmIncompatible`` (version and missing symbols named) before patching anything. The
differences between 0.26 and 0.33 that the patches follow (docs/vllm_versions.md): blocks know their
pool only from 0.30 (``KVCacheBlock.pool``; 0.30 forwards blocks of another pool to it in
``free_blocks``); ``unpin_blocks`` exists from 0.30; vLLM counts prefix-cache hits in
``KVCacheManager.record_prefix_cache_stats`` from 0.27 and inside ``get_computed_blocks`` in 0.26.

Status markers (docs/DEVELOPING.md): ``prefix_cache.registered`` when the class is patched,
``prefix_cache.block_pool`` when a pool got its policy, and ``prefix_cache.stats`` (the policy's
counters, rewritten every ``XEDGE_PREFIX_CACHE_STATS_INTERVAL_S`` seconds, default 1) for the router's
``/metrics`` (``router.prefix_cache_metrics``).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attention_backend.vllm.contract import Report, require_installed
from client_edge.protocol.engine_xargs import (
    DEFAULT_META,
    InvalidRequestMeta,
    RequestMeta,
    parse_request_meta,
)
from client_edge.protocol.status_marker import STATUS_DIR_ENV, write_marker
from server.engine.prefix_cache.policy import EvictionPolicy
from server.engine.prefix_cache.registry import create_policy, policy_class
from server.engine.prefix_cache.vllm_requirements import REQUIREMENTS

logger = logging.getLogger(__name__)

POLICY_ENV = "XEDGE_PREFIX_CACHE_POLICY"
STATS_INTERVAL_ENV = "XEDGE_PREFIX_CACHE_STATS_INTERVAL_S"
DEFAULT_POLICY = "lru"
_PATCHED_ATTR = "_xedge_policy_name"


def register() -> None:
    """Patch vLLM's BlockPool and KVCacheManager (idempotent) and write the ``registered`` marker.

    Raises ``VllmIncompatible`` (nothing patched) when the installed vLLM lacks what the patches need."""
    name = os.environ.get(POLICY_ENV, DEFAULT_POLICY)
    policy_class(name)  # an unknown name raises here, listing the valid ones
    report = require_installed(REQUIREMENTS, "xedge prefix cache")
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.kv_cache_manager import KVCacheManager

    if getattr(BlockPool, _PATCHED_ATTR, None) is None:
        _patch_block_pool(BlockPool, report)
        _patch_manager(KVCacheManager, report)
        setattr(BlockPool, _PATCHED_ATTR, name)
    write_marker("prefix_cache", "registered", {"policy": name, "vllm": report.version})


def installed_policy(block_pool: Any) -> EvictionPolicy | None:
    """The policy object installed in a BlockPool (None: prefix caching off or not patched)."""
    hook = getattr(block_pool, "_xedge", None)
    return hook.policy if hook is not None else None


def flush_stats(block_pool: Any) -> Path | None:
    """Write the pool's ``prefix_cache.stats`` marker now (the writer thread does it every interval)."""
    hook = getattr(block_pool, "_xedge", None)
    if hook is None:
        return None
    return write_marker("prefix_cache", "stats", hook.snapshot())


class _PoolHook:
    """Per-BlockPool state: the policy and the metadata of the request vLLM is working on."""

    def __init__(self, pool: Any, policy_name: str) -> None:
        self.pool = pool
        self.policy_name = policy_name
        self.policy = create_policy(policy_name, pool.num_gpu_blocks - 1, pool.hash_block_size)
        self.meta: RequestMeta | None = None

    def meta_of(self, request: Any) -> RequestMeta:
        cached = getattr(request, "_xedge_meta", None)
        if cached is not None:
            return cached
        params = getattr(request, "sampling_params", None)
        try:
            meta = parse_request_meta(getattr(params, "extra_args", None))
        except InvalidRequestMeta as exc:
            # The API layer validates first; here a bad value must not kill the engine.
            logger.warning("xedge prefix cache: request %s: %s; using defaults", request.request_id, exc)
            self.policy.stats.invalid_meta += 1
            meta = DEFAULT_META
        request._xedge_meta = meta
        return meta

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.policy.stats.snapshot(),
            "candidates": len(self.policy),
            "blocks_cached": self.policy.num_cached(),
            "num_blocks": self.pool.num_gpu_blocks - 1,
            "block_tokens": self.pool.hash_block_size,
        }

    def reset(self) -> None:
        stats = self.policy.stats
        self.policy = create_policy(self.policy_name, self.pool.num_gpu_blocks - 1, self.pool.hash_block_size)
        self.policy.stats = stats


def _move_to_head(queue: Any, block: Any) -> None:
    queue.remove(block)
    queue.prepend_n([block])


def _offset_of(block: Any, block_tokens: int) -> int:
    tokens = block.block_hash_num_tokens
    return max(0, (tokens or block_tokens) // block_tokens - 1)


def _wrap(cls: type, method: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(cls, method)
    setattr(cls, method, functools.wraps(original)(make(original)))


def _patch_block_pool(pool_cls: type, report: Report) -> None:  # noqa: C901 - one closure per patch point
    blocks_know_pool = report.found("KVCacheBlock.pool")  # vLLM >= 0.30

    def init(orig: Callable) -> Callable:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            self._xedge = None
            if not self.enable_caching:
                logger.info("xedge prefix cache: prefix caching is off; policy not installed")
                return
            name = os.environ.get(POLICY_ENV, DEFAULT_POLICY)
            self._xedge = hook = _PoolHook(self, name)
            write_marker(
                "prefix_cache",
                "block_pool",
                {"policy": name, "num_blocks": self.num_gpu_blocks, "block_tokens": self.hash_block_size},
            )
            _start_stats_writer(hook)

        return wrapper

    def get_new_blocks(orig: Callable) -> Callable:
        def wrapper(self: Any, num_blocks: int) -> list:
            hook = self._xedge
            queue = self.free_block_queue
            if hook is None or num_blocks > queue.num_free_blocks:
                return orig(self, num_blocks)
            policy = hook.policy
            num_plain = queue.num_free_blocks - len(policy)
            k = num_blocks - num_plain
            if k > 0:
                plain = queue.popleft_n(num_plain) if num_plain else []
                victims = [self.blocks[i] for i in policy.evict(k, time.monotonic())]
                for block in victims:
                    queue.remove(block)
                queue.prepend_n(plain + victims)
            return orig(self, num_blocks)

        return wrapper

    def cache_full_blocks(orig: Callable) -> Callable:
        signature = inspect.signature(orig)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            hook = self._xedge
            if hook is None:
                return
            bound = signature.bind(self, *args, **kwargs).arguments
            blocks, start, end = bound["blocks"], bound["num_cached_blocks"], bound["num_full_blocks"]
            meta = hook.meta_of(bound["request"])
            policy, now = hook.policy, time.monotonic()
            for offset in range(start, end):
                block = blocks[offset]
                if not block.is_null and block.block_hash is not None and not policy.knows(block.block_id):
                    policy.on_cached(block.block_id, offset, meta, now, hash(block.block_hash))

        return wrapper

    def touch(orig: Callable) -> Callable:
        def wrapper(self: Any, blocks: Any) -> None:
            hook = self._xedge
            if hook is not None:
                policy, meta, now = hook.policy, hook.meta, time.monotonic()
                for block in blocks:
                    if not block.is_null and block.block_hash is not None:
                        policy.on_hit(block.block_id, meta, now)
            orig(self, blocks)

        return wrapper

    def free_blocks(orig: Callable) -> Callable:
        def wrapper(self: Any, ordered_blocks: Any) -> None:
            hook = self._xedge
            if hook is None:
                return orig(self, ordered_blocks)
            blocks = list(ordered_blocks)
            orig(self, blocks)
            policy, meta, now = hook.policy, hook.meta, time.monotonic()
            for block in blocks:
                if block.ref_cnt or block.is_null or block.block_hash is None:
                    continue
                if blocks_know_pool and block.pool is not None and block.pool is not self:
                    continue  # vLLM >= 0.30 handed it to its own pool's (patched) free_blocks
                if not policy.knows(block.block_id):
                    policy.on_cached(
                        block.block_id, _offset_of(block, self.hash_block_size), meta or DEFAULT_META, now
                    )
                policy.on_freed(block.block_id, meta, now)

        return wrapper

    def maybe_evict(orig: Callable) -> Callable:
        def wrapper(self: Any, block: Any) -> bool:
            evicted = orig(self, block)
            hook = self._xedge
            if evicted and hook is not None:
                hook.policy.on_dropped(block.block_id)
                if block.prev_free_block is not None:
                    # Dropped while free (e.g. a KV connector's evict_blocks): it joins the uncached head.
                    _move_to_head(self.free_block_queue, block)
            return evicted

        return wrapper

    def reset_prefix_cache(orig: Callable) -> Callable:
        def wrapper(self: Any) -> bool:
            done = orig(self)
            if done and self._xedge is not None:
                self._xedge.reset()
            return done

        return wrapper

    def move_block_hashes(orig: Callable) -> Callable:
        def wrapper(self: Any, src_block: Any, dst_block: Any) -> None:
            orig(self, src_block, dst_block)
            hook = self._xedge
            if hook is None:
                return
            hook.policy.on_dropped(src_block.block_id)
            if dst_block.block_hash is not None:
                offset = _offset_of(dst_block, self.hash_block_size)
                hook.policy.on_cached(dst_block.block_id, offset, hook.meta or DEFAULT_META, time.monotonic())

        return wrapper

    def unpin_blocks(orig: Callable) -> Callable:
        def wrapper(self: Any, blocks: Any, on_reuse: Any) -> None:
            hook = self._xedge
            if hook is None:
                return orig(self, blocks, on_reuse)
            blocks = list(blocks)
            orig(self, blocks, on_reuse)
            now = time.monotonic()
            for block in blocks:
                if block.ref_cnt:
                    continue
                if block.block_hash is None:
                    _move_to_head(self.free_block_queue, block)
                    continue
                if not hook.policy.knows(block.block_id):
                    hook.policy.on_cached(
                        block.block_id, _offset_of(block, self.hash_block_size), DEFAULT_META, now
                    )
                hook.policy.on_freed(block.block_id, None, now)

        return wrapper

    _wrap(pool_cls, "__init__", init)
    _wrap(pool_cls, "get_new_blocks", get_new_blocks)
    _wrap(pool_cls, "cache_full_blocks", cache_full_blocks)
    _wrap(pool_cls, "touch", touch)
    _wrap(pool_cls, "free_blocks", free_blocks)
    _wrap(pool_cls, "_maybe_evict_cached_block", maybe_evict)
    _wrap(pool_cls, "reset_prefix_cache", reset_prefix_cache)
    _wrap(pool_cls, "move_block_hashes", move_block_hashes)
    if report.found("BlockPool.unpin_blocks"):  # vLLM >= 0.30; before, no block is pinned until reuse
        _wrap(pool_cls, "unpin_blocks", unpin_blocks)


def _patch_manager(manager_cls: type, report: Report) -> None:
    def with_request(orig: Callable) -> Callable:
        def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            hook = getattr(self.block_pool, "_xedge", None)
            if hook is None:
                return orig(self, request, *args, **kwargs)
            hook.meta = hook.meta_of(request)
            try:
                return orig(self, request, *args, **kwargs)
            finally:
                hook.meta = None

        return wrapper

    def record_stats(orig: Callable) -> Callable:
        def wrapper(self: Any, request: Any, num_hits: int) -> None:
            orig(self, request, num_hits)
            hook = getattr(self.block_pool, "_xedge", None)
            if hook is None or getattr(request, "skip_reading_prefix_cache", False):
                return
            hook.policy.stats.record_request(hook.meta_of(request).category, request.num_tokens, num_hits)

        return wrapper

    def computed_blocks_stats(orig: Callable) -> Callable:
        # vLLM 0.26 records its own prefix-cache stats inside get_computed_blocks, after the same checks.
        def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(self, request, *args, **kwargs)
            hook = getattr(self.block_pool, "_xedge", None)
            if hook is not None and self.enable_caching and not request.skip_reading_prefix_cache:
                hook.policy.stats.record_request(
                    hook.meta_of(request).category, request.num_tokens, result[1]
                )
            return result

        return wrapper

    _wrap(manager_cls, "allocate_slots", with_request)
    _wrap(manager_cls, "free", with_request)
    if report.found("KVCacheManager.record_prefix_cache_stats"):  # vLLM >= 0.27
        _wrap(manager_cls, "record_prefix_cache_stats", record_stats)
    else:  # the contract check guarantees the 0.26 form then
        _wrap(manager_cls, "get_computed_blocks", computed_blocks_stats)


def _start_stats_writer(hook: _PoolHook) -> None:
    """Rewrite the ``prefix_cache.stats`` marker every interval while the pool lives (and at exit)."""
    if not os.environ.get(STATUS_DIR_ENV):
        return
    interval = float(os.environ.get(STATS_INTERVAL_ENV, "1.0"))
    if interval <= 0:
        raise ValueError(f"{STATS_INTERVAL_ENV} must be > 0, got {interval}")
    ref = weakref.ref(hook)

    def write() -> bool:
        live = ref()
        if live is None:
            return False
        write_marker("prefix_cache", "stats", live.snapshot())
        return True

    def loop() -> None:
        while True:
            time.sleep(interval)
            if not write():
                return

    write()
    atexit.register(write)
    threading.Thread(target=loop, name="xedge-prefix-cache-stats", daemon=True).start()
