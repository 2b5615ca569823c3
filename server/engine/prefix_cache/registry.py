"""Policy names -> implementations, imported lazily. ``create_policy`` is the only constructor callers use."""

from __future__ import annotations

import importlib

from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.policy import EvictionPolicy

# name -> "module:Class". ``belady`` needs the future trace, so only the simulator can build it.
POLICIES: dict[str, str] = {
    "lru": "server.engine.prefix_cache.lru:LRUPolicy",
    "workload": "server.engine.prefix_cache.workload:WorkloadPolicy",
    "workload-paper": "server.engine.prefix_cache.workload:WorkloadPaperPolicy",
    "s3fifo": "server.engine.prefix_cache.s3fifo:S3FIFOPolicy",
    "density": "server.engine.prefix_cache.density:DensityPolicy",
}
ORACLE_POLICIES: dict[str, str] = {
    "belady": "server.research.cache_sim.belady:BeladyPolicy",
}


class UnknownPolicyError(ValueError):
    """A policy name that is not registered; the message lists the valid names."""


def policy_class(name: str, *, allow_oracle: bool = False) -> type[EvictionPolicy]:
    table = {**POLICIES, **ORACLE_POLICIES} if allow_oracle else POLICIES
    target = table.get(name)
    if target is None:
        raise UnknownPolicyError(f"unknown prefix-cache policy {name!r}; valid: {', '.join(sorted(table))}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_policy(
    name: str, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None
) -> EvictionPolicy:
    """Build the online policy ``name`` for a cache of ``capacity_blocks`` blocks of ``block_tokens``."""
    return policy_class(name)(capacity_blocks, block_tokens, config)
