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
        _BlockPoolPatch(BlockPool, report)
        _ManagerPatch(KVCacheManager, report)
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
    return hook.write_stats()


def request_meta(request: Any, who: str, on_invalid: Callable[[], None]) -> RequestMeta:
    """A vLLM request's xedge metadata, parsed once and kept on the request (``_xedge_meta``), so every plugin
    that reads it (this adapter, the host KV tier's connector) sees the same. A value that does not parse is
    logged (``who``), counted (``on_invalid``) and replaced by the defaults: the API layer validates first, and
    here a bad value must not kill the engine."""
    cached = getattr(request, "_xedge_meta", None)
    if cached is not None:
        return cached
    params = getattr(request, "sampling_params", None)
    try:
        meta = parse_request_meta(getattr(params, "extra_args", None))
    except InvalidRequestMeta as exc:
        logger.warning("%s: request %s: %s; using defaults", who, request.request_id, exc)
        on_invalid()
        meta = DEFAULT_META
    request._xedge_meta = meta
    return meta


class _PoolHook:
    """Per-BlockPool state: the policy and the metadata of the request vLLM is working on."""

    def __init__(self, pool: Any, policy_name: str) -> None:
        self.pool = pool
        self.policy_name = policy_name
        self.policy = create_policy(policy_name, pool.num_gpu_blocks - 1, pool.hash_block_size)
        self.meta: RequestMeta | None = None
        self._write_lock = threading.Lock()

    def meta_of(self, request: Any) -> RequestMeta:
        return request_meta(request, "xedge prefix cache", self._count_invalid)

    def _count_invalid(self) -> None:
        self.policy.stats.invalid_meta += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.policy.stats.snapshot(),
            "candidates": len(self.policy),
            "blocks_cached": self.policy.num_cached(),
            "num_blocks": self.pool.num_gpu_blocks - 1,
            "block_tokens": self.pool.hash_block_size,
            "policy_stats": self.policy.own_stats(),
        }

    def write_stats(self) -> Path | None:
        """Write the ``prefix_cache.stats`` marker. Snapshot and write under one lock, so the writer thread and
        a flush never leave an older snapshot on disk after a newer one."""
        with self._write_lock:
            return write_marker("prefix_cache", "stats", self.snapshot())

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


class _Patch:
    """Replacement methods for one vLLM class. ``install`` swaps each listed method for a thin
    trampoline that calls ``self.<method>(instance, ...)``; the original stays in ``self.orig`` and
    every replacement calls it."""

    def __init__(self) -> None:
        self.orig: dict[str, Callable] = {}

    def install(self, cls: type, methods: dict[str, str]) -> None:
        """``methods``: vLLM method name -> name of the replacement method of this object."""
        for target, handler_name in methods.items():
            original = getattr(cls, target)
            self.orig[target] = original
            setattr(cls, target, functools.wraps(original)(_trampoline(getattr(self, handler_name))))


def _trampoline(handler: Callable) -> Callable:
    def method(instance: Any, *args: Any, **kwargs: Any) -> Any:
        return handler(instance, *args, **kwargs)

    return method


class _BlockPoolPatch(_Patch):
    """Our methods on vLLM's ``BlockPool`` (``pool`` is the BlockPool instance, ``pool._xedge`` its
    ``_PoolHook`` or None when prefix caching is off)."""

    def __init__(self, pool_cls: type, report: Report) -> None:
        super().__init__()
        self.blocks_know_pool = report.found("KVCacheBlock.pool")  # vLLM >= 0.30
        self.cache_full_signature = inspect.signature(pool_cls.cache_full_blocks)
        methods = {
            "__init__": "init",
            "get_new_blocks": "get_new_blocks",
            "cache_full_blocks": "cache_full_blocks",
            "touch": "touch",
            "free_blocks": "free_blocks",
            "_maybe_evict_cached_block": "maybe_evict",
            "reset_prefix_cache": "reset_prefix_cache",
            "move_block_hashes": "move_block_hashes",
        }
        if report.found("BlockPool.unpin_blocks"):  # vLLM >= 0.30; before, no block is pinned until reuse
            methods["unpin_blocks"] = "unpin_blocks"
        self.install(pool_cls, methods)

    def init(self, pool: Any, *args: Any, **kwargs: Any) -> None:
        self.orig["__init__"](pool, *args, **kwargs)
        pool._xedge = None
        if not pool.enable_caching:
            logger.info("xedge prefix cache: prefix caching is off; policy not installed")
            return
        if pool.num_gpu_blocks < 2:  # block 0 is vLLM's null block: no cacheable block at all
            logger.warning(
                "xedge prefix cache: %d KV blocks, none cacheable; policy not installed", pool.num_gpu_blocks
            )
            return
        name = os.environ.get(POLICY_ENV, DEFAULT_POLICY)
        pool._xedge = hook = _PoolHook(pool, name)
        write_marker(
            "prefix_cache",
            "block_pool",
            {"policy": name, "num_blocks": pool.num_gpu_blocks, "block_tokens": pool.hash_block_size},
        )
        _start_stats_writer(hook)

    def get_new_blocks(self, pool: Any, num_blocks: int) -> list:
        """Move the policy's victims right behind the uncached head blocks; vLLM pops and evicts them."""
        hook, queue = pool._xedge, pool.free_block_queue
        if hook is not None and num_blocks <= queue.num_free_blocks:
            policy = hook.policy
            num_plain = queue.num_free_blocks - len(policy)
            k = num_blocks - num_plain
            if k > 0:
                plain = queue.popleft_n(num_plain) if num_plain else []
                victims = [pool.blocks[i] for i in policy.evict(k, time.monotonic())]
                for block in victims:
                    queue.remove(block)
                queue.prepend_n(plain + victims)
        return self.orig["get_new_blocks"](pool, num_blocks)

    def cache_full_blocks(self, pool: Any, *args: Any, **kwargs: Any) -> None:
        self.orig["cache_full_blocks"](pool, *args, **kwargs)
        hook = pool._xedge
        if hook is None:
            return
        bound = self.cache_full_signature.bind(pool, *args, **kwargs).arguments
        blocks, start, end = bound["blocks"], bound["num_cached_blocks"], bound["num_full_blocks"]
        meta = hook.meta_of(bound["request"])
        policy, now = hook.policy, time.monotonic()
        for offset in range(start, end):
            block = blocks[offset]
            if not block.is_null and block.block_hash is not None and not policy.knows(block.block_id):
                policy.on_cached(block.block_id, offset, meta, now, hash(block.block_hash))

    def touch(self, pool: Any, blocks: Any) -> None:
        hook = pool._xedge
        if hook is not None:
            policy, meta, now = hook.policy, hook.meta, time.monotonic()
            for block in blocks:
                if not block.is_null and block.block_hash is not None:
                    policy.on_hit(block.block_id, meta, now)
        self.orig["touch"](pool, blocks)

    def free_blocks(self, pool: Any, ordered_blocks: Any) -> None:
        hook = pool._xedge
        if hook is None:
            return self.orig["free_blocks"](pool, ordered_blocks)
        blocks = list(ordered_blocks)
        self.orig["free_blocks"](pool, blocks)
        policy, meta, now = hook.policy, hook.meta, time.monotonic()
        for block in blocks:
            if block.ref_cnt or block.is_null or block.block_hash is None:
                continue
            if self.blocks_know_pool and block.pool is not None and block.pool is not pool:
                continue  # vLLM >= 0.30 handed it to its own pool's (patched) free_blocks
            if not policy.knows(block.block_id):
                offset = _offset_of(block, pool.hash_block_size)
                policy.on_cached(block.block_id, offset, meta or DEFAULT_META, now)
            policy.on_freed(block.block_id, meta, now)
        return None

    def maybe_evict(self, pool: Any, block: Any) -> bool:
        evicted = self.orig["_maybe_evict_cached_block"](pool, block)
        hook = pool._xedge
        if evicted and hook is not None:
            hook.policy.on_dropped(block.block_id)
            if block.prev_free_block is not None:
                # Dropped while free (e.g. a KV connector's evict_blocks): it joins the uncached head.
                _move_to_head(pool.free_block_queue, block)
        return evicted

    def reset_prefix_cache(self, pool: Any) -> bool:
        done = self.orig["reset_prefix_cache"](pool)
        if done and pool._xedge is not None:
            pool._xedge.reset()
        return done

    def move_block_hashes(self, pool: Any, src_block: Any, dst_block: Any) -> None:
        self.orig["move_block_hashes"](pool, src_block, dst_block)
        hook = pool._xedge
        if hook is None:
            return
        hook.policy.on_dropped(src_block.block_id)
        if dst_block.block_hash is not None:
            offset = _offset_of(dst_block, pool.hash_block_size)
            hook.policy.on_cached(dst_block.block_id, offset, hook.meta or DEFAULT_META, time.monotonic())

    def unpin_blocks(self, pool: Any, blocks: Any, on_reuse: Any) -> None:
        hook = pool._xedge
        if hook is None:
            return self.orig["unpin_blocks"](pool, blocks, on_reuse)
        blocks = list(blocks)
        self.orig["unpin_blocks"](pool, blocks, on_reuse)
        policy, now = hook.policy, time.monotonic()
        for block in blocks:
            if block.ref_cnt:
                continue
            if block.block_hash is None:
                _move_to_head(pool.free_block_queue, block)
                continue
            if not policy.knows(block.block_id):
                policy.on_cached(block.block_id, _offset_of(block, pool.hash_block_size), DEFAULT_META, now)
            policy.on_freed(block.block_id, None, now)
        return None


class _ManagerPatch(_Patch):
    """Our methods on vLLM's ``KVCacheManager``: note the request being allocated / freed (its metadata
    reaches the pool's events) and count per-category prefix hits where vLLM counts its own."""

    def __init__(self, manager_cls: type, report: Report) -> None:
        super().__init__()
        methods = {"allocate_slots": "allocate_slots", "free": "free"}
        if report.found("KVCacheManager.record_prefix_cache_stats"):  # vLLM >= 0.27
            methods["record_prefix_cache_stats"] = "record_stats"
        else:  # the contract check guarantees the 0.26 form then
            methods["get_computed_blocks"] = "computed_blocks_stats"
        self.install(manager_cls, methods)

    def allocate_slots(self, manager: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._with_request("allocate_slots", manager, request, *args, **kwargs)

    def free(self, manager: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._with_request("free", manager, request, *args, **kwargs)

    def _with_request(self, method: str, manager: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        hook = getattr(manager.block_pool, "_xedge", None)
        if hook is None:
            return self.orig[method](manager, request, *args, **kwargs)
        hook.meta = hook.meta_of(request)
        try:
            return self.orig[method](manager, request, *args, **kwargs)
        finally:
            hook.meta = None

    def record_stats(self, manager: Any, request: Any, num_hits: int) -> None:
        self.orig["record_prefix_cache_stats"](manager, request, num_hits)
        hook = getattr(manager.block_pool, "_xedge", None)
        if hook is None or getattr(request, "skip_reading_prefix_cache", False):
            return
        hook.policy.stats.record_request(hook.meta_of(request).category, request.num_tokens, num_hits)

    def computed_blocks_stats(self, manager: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        # vLLM 0.26 records its own prefix-cache stats inside get_computed_blocks, after the same checks.
        result = self.orig["get_computed_blocks"](manager, request, *args, **kwargs)
        hook = getattr(manager.block_pool, "_xedge", None)
        if hook is not None and manager.enable_caching and not request.skip_reading_prefix_cache:
            hook.policy.stats.record_request(hook.meta_of(request).category, request.num_tokens, result[1])
        return result


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
        live.write_stats()
        return True

    def loop() -> None:
        while True:
            time.sleep(interval)
            if not write():
                return

    write()
    atexit.register(write)
    threading.Thread(target=loop, name="xedge-prefix-cache-stats", daemon=True).start()
