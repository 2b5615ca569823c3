"""Policy names -> implementations, imported lazily. ``create_policy`` is the only constructor callers use."""

from __future__ import annotations

from client_edge.protocol.registry import LazyRegistry, UnknownNameError
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.policy import EvictionPolicy


class UnknownPolicyError(UnknownNameError):
    """A policy name that is not registered; the message lists the valid names."""


POLICIES = LazyRegistry(
    "prefix-cache policy",
    {
        "lru": "server.engine.prefix_cache.lru:LRUPolicy",
        "workload": "server.engine.prefix_cache.workload:WorkloadPolicy",
        "workload-paper": "server.engine.prefix_cache.workload:WorkloadPaperPolicy",
        "s3fifo": "server.engine.prefix_cache.s3fifo:S3FIFOPolicy",
        "density": "server.engine.prefix_cache.density:DensityPolicy",
        "guarded": "server.engine.prefix_cache.guarded:GuardedPolicy",
        "session": "server.engine.prefix_cache.session:SessionPolicy",
        "session-due": "server.engine.prefix_cache.session_due:SessionDuePolicy",
    },
    UnknownPolicyError,
)
# ``belady`` needs the future trace, so only the simulator can build it.
ORACLE_POLICIES = LazyRegistry(
    "prefix-cache policy", {"belady": "server.research.cache_sim.belady:BeladyPolicy"}, UnknownPolicyError
)


def policy_class(name: str, *, allow_oracle: bool = False) -> type[EvictionPolicy]:
    return (POLICIES | ORACLE_POLICIES if allow_oracle else POLICIES).load(name)


def create_policy(
    name: str, capacity_blocks: int, block_tokens: int, config: PolicyConfig | None = None
) -> EvictionPolicy:
    """Build the online policy ``name`` for a cache of ``capacity_blocks`` blocks of ``block_tokens``."""
    return policy_class(name)(capacity_blocks, block_tokens, config)
