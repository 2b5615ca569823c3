"""Counters a policy and its pool keep; a plain JSON-able snapshot feeds files and Prometheus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Distinct request categories kept per policy; later new ones are counted under OTHER_CATEGORY, so
#: category names sent with requests cannot grow the engine's memory or the /metrics series without bound.
MAX_CATEGORIES = 64
OTHER_CATEGORY = "other"


@dataclass
class CategoryStats:
    requests: int = 0
    query_tokens: int = 0
    hit_tokens: int = 0


@dataclass
class PolicyStats:
    """Block-level counters (kept by the policy) and request-level counters (kept by the pool)."""

    policy: str
    evictions: int = 0
    pinned_evictions: int = 0
    block_hits: int = 0
    blocks_inserted: int = 0
    pins_refused: int = 0
    invalid_meta: int = 0
    categories: dict[str, CategoryStats] = field(default_factory=dict)

    def record_request(self, category: str, query_tokens: int, hit_tokens: int) -> None:
        stats = self.categories.get(category)
        if stats is None:
            if len(self.categories) >= MAX_CATEGORIES:
                category = OTHER_CATEGORY
            stats = self.categories.get(category)
            if stats is None:
                stats = self.categories[category] = CategoryStats()
        stats.requests += 1
        stats.query_tokens += query_tokens
        stats.hit_tokens += hit_tokens

    def snapshot(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "evictions": self.evictions,
            "pinned_evictions": self.pinned_evictions,
            "block_hits": self.block_hits,
            "blocks_inserted": self.blocks_inserted,
            "pins_refused": self.pins_refused,
            "invalid_meta": self.invalid_meta,
            "categories": {
                name: {"requests": c.requests, "query_tokens": c.query_tokens, "hit_tokens": c.hit_tokens}
                for name, c in list(self.categories.items())
            },
        }
