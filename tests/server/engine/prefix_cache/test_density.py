"""The ``density`` policy and its reuse-gap histogram."""

from __future__ import annotations

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.registry import create_policy
from server.engine.prefix_cache.reuse_histogram import ReuseHistogram, bucket


def _histogram(gap_s: float, reuses: int, periods: int) -> ReuseHistogram:
    hist = ReuseHistogram()
    for _ in range(periods):
        hist.start_period()
    for _ in range(reuses):
        hist.add_reuse(gap_s)
    return hist


def test_histogram_probability_and_density_follow_the_gap_shape() -> None:
    hist = _histogram(100.0, reuses=5, periods=10)  # half the idle periods end in a reuse at 100 s
    assert hist.reuse_probability(0.0, 1000.0) == pytest.approx(0.5)
    assert hist.reuse_probability(200.0, 1000.0) == 0.0  # past every observed gap
    table = hist.table(200.0)
    fresh, near, late = table[bucket(0.0)], table[bucket(95.0)], table[bucket(300.0)]
    # not monotone like an exponential model: a block close to its usual reuse age is worth more
    # per block-second than a fresh one, and one past every observed gap is worth nothing
    assert near > 1.3 * fresh > 0.0
    assert late == 0.0
    hist.decay(0.5)
    assert hist.periods == 5.0 and hist.reuse_probability(0.0, 1000.0) == pytest.approx(0.5)


def _train(policy, category: str, gap_s: float, start: float, rounds: int, first_block: int) -> float:
    """Blocks of ``category`` are reused exactly ``gap_s`` after each use."""
    meta = RequestMeta(category=category)
    now = start
    for i in range(rounds):
        block = first_block + i
        policy.on_cached(block, 1, meta, now, content=block)
        policy.on_freed(block, meta, now)
        policy.on_hit(block, meta, now + gap_s)
        policy.on_freed(block, meta, now + gap_s)
        policy.on_dropped(block)
        now += 1.0
    return now + gap_s


@pytest.mark.parametrize("name, expected", [("density", [2]), ("workload", [1])])
def test_density_keeps_the_block_about_to_be_reused(name: str, expected: list[int]) -> None:
    """Chat turns ("slow") come back after 100 s, "fast" blocks after 20 s. A slow block idle 95 s is
    due in 5 s, a fast one idle 1 s in 19 s: per block-second the slow one is worth more. ``density``
    evicts the fast block; ``workload`` (exponential model, longer gaps look worse) and lru evict the
    slow one."""
    policy = create_policy(name, 64, 16)
    now = _train(policy, "slow", 100.0, 0.0, 50, 1000)
    now = _train(policy, "fast", 20.0, now, 50, 2000)
    if name == "density":
        policy.refresh_tables()
    policy.on_cached(1, 1, RequestMeta(category="slow"), now, content=1)
    policy.on_freed(1, RequestMeta(category="slow"), now)
    policy.on_cached(2, 1, RequestMeta(category="fast"), now + 94.0, content=2)
    policy.on_freed(2, RequestMeta(category="fast"), now + 94.0)
    assert policy.evict(1, now + 95.0) == expected
    policy.check_integrity()


def test_density_evicts_the_never_reused_category_first() -> None:
    """ "api" blocks are never reused: they go first even when newer (lru would evict the chat block)."""
    policy = create_policy("density", 64, 16, PolicyConfig(density_refresh=50))
    now = _train(policy, "chat", 30.0, 0.0, 100, 1000)
    api = RequestMeta(category="api")
    for i in range(100):
        policy.on_cached(3000 + i, 1, api, now + i, content=3000 + i)
        policy.on_freed(3000 + i, api, now + i)
        policy.evict(1, now + i)  # api content is never seen again
    policy.on_cached(1, 1, RequestMeta(category="chat"), now + 100, content=1)
    policy.on_freed(1, RequestMeta(category="chat"), now + 100)
    policy.on_cached(2, 1, api, now + 101, content=2)
    policy.on_freed(2, api, now + 101)
    assert policy.evict(1, now + 102) == [2]
    assert policy.knows(1)


def test_a_category_without_a_table_is_kept() -> None:
    policy = create_policy("density", 64, 16)
    policy.on_cached(1, 0, RequestMeta(category="new"), 0.0)
    policy.on_freed(1, RequestMeta(category="new"), 0.0)
    assert policy.density("new", 5.0) is None
    assert policy.evict(1, 10.0) == [1]  # the only candidate still goes when asked


def test_bad_density_config_is_refused() -> None:
    for bad in ({"density_horizon_s": 0.0}, {"density_refresh": 0}, {"density_decay": 0.0}):
        with pytest.raises(ValueError, match="density_horizon_s must be > 0"):
            PolicyConfig(**bad)
