"""``HostKVTier``: vLLM's KV connector for the host tier (``server.engine.kv_tier``); the only module of the
package that imports vLLM.

Turned on by ``xedge serve --kv-host-tier-blocks N`` (``kv_tier.config.kv_transfer_config``)::

    --kv-transfer-config '{"kv_connector": "HostKVTier", "kv_role": "kv_both",
                           "kv_connector_module_path": "server.engine.kv_tier.vllm_connector",
                           "kv_load_failure_policy": "recompute",
                           "kv_connector_extra_config": {"host_blocks": N}}'

vLLM makes two instances: the scheduler's (EngineCore) and the worker's (the process that holds the KV
tensors; the same process when ``VLLM_ENABLE_V1_MULTIPROCESSING=0``). They share nothing but the per-step
metadata, so the design works in both layouts:

- Scheduler side (``SlotIndex``, keyed by vLLM's chained block hash, so a hash names a whole prefix; when full,
  the engine's eviction policy, ``XEDGE_PREFIX_CACHE_POLICY``, picks the slot that gives way, with the
  requests' xedge metadata; a request's slots are in use until ``request_finished``, so ``session-due``
  sees one request per escalation and keeps the sessions due next in the tier as in vLLM's cache):
  ``get_num_new_matched_tokens`` counts the unbroken run of the request's next block hashes held in the tier
  (never the prompt's last token: vLLM computes at least one) and answers it as a synchronous load;
  ``update_state_after_alloc`` turns the run into (slot -> block) loads; ``build_connector_meta`` adds
  (block -> slot) saves for the blocks each scheduled request fills this step.
- Worker side: ``register_kv_caches`` allocates ``N`` host slots per KV tensor (vLLM's CPU layout puts the block
  id first: one ``index_copy_`` per tensor moves a step's blocks); ``start_load_kv`` copies slots into the
  newly allocated blocks before the forward, ``wait_for_save`` copies the filled blocks out after it.

A block is saved once, when it is computed (the tier is inclusive of vLLM's cache: what vLLM evicts later is
already here). Hits show in vLLM's usage as cached prompt tokens (``prompt_tokens_details.cached_tokens``
includes external hits) and in the ``kv_tier.stats`` marker. Needs ``KVConnectorBase_V1.bind_kv_cache_manager``
(vLLM 0.30 - 0.33 have it, 0.26 - 0.29 do not: the connector stops at start-up there with that message).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from client_edge.protocol.engine_xargs import (
    RequestMeta,
)
from client_edge.protocol.status_marker import write_marker
from server.engine.kv_tier.config import HostKVTierError, host_blocks
from server.engine.kv_tier.slots import SlotIndex
from server.engine.prefix_cache.registry import create_policy
from server.engine.prefix_cache.vllm_adapter import DEFAULT_POLICY, POLICY_ENV, request_meta

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0


@dataclass
class HostKVTierMeta(KVConnectorMetadata):
    """One step's copies: ``loads`` (host slot, vLLM block) before the forward, ``saves`` (vLLM block, host
    slot) after it."""

    loads: list[tuple[int, int]] = field(default_factory=list)
    saves: list[tuple[int, int]] = field(default_factory=list)


class HostKVTier(KVConnectorBase_V1):
    def __init__(self, vllm_config: VllmConfig, role: KVConnectorRole, kv_cache_config: Any = None):
        super().__init__(vllm_config, role, kv_cache_config)
        self._capacity = host_blocks(vllm_config.kv_transfer_config.kv_connector_extra_config)
        self._block = vllm_config.cache_config.block_size
        if role == KVConnectorRole.SCHEDULER:
            if not hasattr(KVConnectorBase_V1, "bind_kv_cache_manager"):
                raise HostKVTierError(
                    "the host KV tier needs KVConnectorBase_V1.bind_kv_cache_manager (vLLM >= 0.30; this vLLM "
                    "does not have it): run without --kv-host-tier-blocks"
                )
            self._policy_name = os.environ.get(POLICY_ENV, DEFAULT_POLICY)
            self._index = SlotIndex(create_policy(self._policy_name, self._capacity, self._block))
            self._invalid_meta = 0
            self._reqs: dict[str, Request] = {}
            self._saved: dict[str, int] = {}  # request id -> its blocks below this are in the tier (or were)
            self._pending: dict[str, int] = {}  # request id -> first block of the run get_num_new_matched_tokens saw
            self._loads: list[tuple[int, int]] = []
            self._stats_at = 0.0
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # worker: (vLLM KV tensor, its host slots)
        self._load_errors: set[int] = set()  # worker: blocks whose load failed since vLLM last asked

    @property
    def requires_kv_delivery(self) -> bool:
        return False  # a best-effort cache: a save that never happens is a later miss, nothing more

    # ---------------- scheduler side ----------------

    def get_num_new_matched_tokens(self, request: Request, num_computed_tokens: int) -> tuple[int | None, bool]:
        self._index.counters.lookups += 1
        if num_computed_tokens % self._block:
            return 0, False
        first = num_computed_tokens // self._block
        last = (request.num_tokens - 1) // self._block  # vLLM computes at least the prompt's last token
        run = self._index.run_length(request.block_hashes[first:last])
        if run:
            self._pending[request.request_id] = first
        return run * self._block, False

    def update_state_after_alloc(self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int) -> None:
        rid = request.request_id
        self._reqs[rid] = request
        self._saved[rid] = 0
        first = self._pending.pop(rid, None)
        if not num_external_tokens or first is None:
            return
        ids, meta, now = blocks.get_block_ids()[0], self._meta(request), time.monotonic()
        for j in range(first, first + num_external_tokens // self._block):
            self._loads.append((self._index.load(request.block_hashes[j], rid, meta, now), ids[j]))
        # saving still walks from block 0: the blocks vLLM's own cache served before the loaded run go back to
        # the tier if it lost them (the loaded ones are held: their save is a no-op that marks them in use)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        meta = HostKVTierMeta(loads=self._loads)
        self._loads = []
        manager, now = self._kv_cache_manager, time.monotonic()
        for rid, n in scheduler_output.num_scheduled_tokens.items():
            req = self._reqs.get(rid)
            if req is None or manager is None:
                continue
            done = min((req.num_computed_tokens + n) // self._block, len(req.block_hashes))
            start = self._saved.get(rid, 0)
            if done <= start:
                continue
            ids, req_meta = manager.get_block_ids(rid)[0], self._meta(req)
            for j in range(start, min(done, len(ids))):
                slot = self._index.save(req.block_hashes[j], j, rid, req_meta, now)
                if slot is not None:
                    meta.saves.append((ids[j], slot))
            self._saved[rid] = done
        self._maybe_write_stats()
        return meta

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        rid = request.request_id
        self._reqs.pop(rid, None)
        self._saved.pop(rid, None)
        self._pending.pop(rid, None)
        self._index.finish(rid, time.monotonic())
        return False, None

    def _meta(self, request: Request) -> RequestMeta:
        """The request's xedge metadata (parsed once; the prefix-cache adapter may have done it already)."""
        return request_meta(request, "xedge host KV tier", self._count_invalid)

    def _count_invalid(self) -> None:
        self._invalid_meta += 1

    def stats(self) -> dict[str, Any]:
        c = self._index.counters
        return {"capacity_blocks": self._capacity, "policy": self._policy_name, "held_blocks": len(self._index),
                "lookups": c.lookups, "hit_blocks": c.hit_blocks, "saved_blocks": c.saved_blocks,
                "evicted_blocks": c.evicted_blocks, "skipped_saves": c.skipped_saves,
                "invalid_meta": self._invalid_meta, "policy_stats": self._index.policy.own_stats()}  # fmt: skip

    def _maybe_write_stats(self) -> None:
        now = time.monotonic()
        if now - self._stats_at >= STATS_INTERVAL_S:
            self._stats_at = now
            write_marker("kv_tier", "stats", self.stats())

    # ---------------- worker side ----------------

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        seen: set[int] = set()
        for t in kv_caches.values():
            if t.data_ptr() in seen:  # layers that share their KV alias one tensor
                continue
            seen.add(t.data_ptr())
            self._pairs.append((t, torch.empty((self._capacity, *t.shape[1:]), dtype=t.dtype, device="cpu")))
        size = sum(h.numel() * h.element_size() for _, h in self._pairs)
        logger.info("xedge host KV tier: %d blocks, %.1f MiB over %d KV tensors", self._capacity, size / 2**20,
                    len(self._pairs))  # fmt: skip
        write_marker("kv_tier", "registered", {"capacity_blocks": self._capacity, "bytes": size,
                                               "tensors": len(self._pairs)})  # fmt: skip

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, HostKVTierMeta)
        if meta.loads:
            slots, blocks = (torch.tensor(x, dtype=torch.long) for x in zip(*meta.loads, strict=True))
            try:
                for t, host in self._pairs:
                    t.index_copy_(0, blocks.to(t.device), host.index_select(0, slots).to(t.device))
            except (RuntimeError, IndexError) as exc:  # vLLM recomputes these blocks (kv_load_failure_policy)
                logger.error("xedge host KV tier: loading %d blocks failed (%s); vLLM recomputes them", len(blocks), exc)
                self._load_errors.update(blocks.tolist())

    def wait_for_save(self) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, HostKVTierMeta)
        if meta.saves:
            blocks, slots = (torch.tensor(x, dtype=torch.long) for x in zip(*meta.saves, strict=True))
            for t, host in self._pairs:
                host.index_copy_(0, slots, t.index_select(0, blocks.to(t.device)).cpu())

    def wait_for_layer_load(self, layer_name: str) -> None:
        return None  # loads are whole blocks of every layer, done before the forward

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any, **kwargs: Any) -> None:
        return None  # saves are whole blocks of every layer, done after the forward

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, set[str] | None]:
        return None, None

    def get_block_ids_with_load_errors(self) -> set[int]:
        errors, self._load_errors = self._load_errors, set()
        return errors
