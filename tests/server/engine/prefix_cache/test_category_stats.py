"""Per-category request stats are bounded: category names come with requests, so new names past
MAX_CATEGORIES are counted under OTHER_CATEGORY instead of growing the engine's memory and /metrics."""

from __future__ import annotations

from server.engine.prefix_cache.stats import MAX_CATEGORIES, OTHER_CATEGORY, PolicyStats


def test_category_stats_are_bounded_and_nothing_is_lost() -> None:
    stats = PolicyStats(policy="lru")
    for i in range(MAX_CATEGORIES + 300):
        stats.record_request(f"attacker-{i}", query_tokens=10, hit_tokens=1)
    stats.record_request("attacker-0", query_tokens=10, hit_tokens=1)  # a known name keeps its own row
    assert len(stats.categories) == MAX_CATEGORIES + 1
    assert stats.categories[OTHER_CATEGORY].requests == 300
    assert stats.categories["attacker-0"].requests == 2
    assert sum(c.requests for c in stats.categories.values()) == MAX_CATEGORIES + 301
