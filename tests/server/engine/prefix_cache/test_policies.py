"""The eviction-policy contract, checked on every registered online policy, plus policy specifics."""

from __future__ import annotations

import json
import random

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.policy import EvictionPolicy
from server.engine.prefix_cache.registry import POLICIES, UnknownPolicyError, create_policy, policy_class
from tests.fakes.policy_events import drive_random_events

META = RequestMeta()


def _drive(name: str, seed: int, steps: int = 3000) -> EvictionPolicy:
    """Random cache/hit/free/evict/drop events against a model of which blocks are free."""
    rng = random.Random(seed)
    policy = create_policy(name, capacity_blocks=64, block_tokens=16)
    return drive_random_events(
        policy, rng, steps, lambda kind: RequestMeta(category=rng.choice("ab")) if kind == "cached" else META
    )


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract_on_random_events(name: str, seed: int) -> None:
    _drive(name, seed)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_own_stats_are_json_numbers_names_or_numbers_by_name(name: str) -> None:
    """What ``own_stats`` returns goes into the stats marker (JSON) and the router's /metrics."""
    own = _drive(name, 0, steps=500).own_stats()
    assert json.loads(json.dumps(own)) == own
    for key, value in own.items():
        assert isinstance(value, int | float | str) or (
            isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values())
        ), (key, value)
    assert bool(own) == (name in ("guarded", "session", "session-due")), own


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_evict_more_than_candidates_is_refused(name: str) -> None:
    policy = create_policy(name, 8, 16)
    policy.on_cached(1, 0, META, 0.0)
    policy.on_freed(1, META, 1.0)
    with pytest.raises(ValueError, match="cannot evict 2 blocks, 1 candidates"):
        policy.evict(2, 2.0)


def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(UnknownPolicyError, match="valid: density, guarded, lru, s3fifo, session, session-due, workload"):
        policy_class("lfu")
    with pytest.raises(UnknownPolicyError, match="belady"):
        policy_class("nope", allow_oracle=True)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_bad_capacity_and_config_are_refused(name: str) -> None:
    """A cache below one block (or a block of no tokens) is refused by every policy with what it got."""
    with pytest.raises(ValueError, match="capacity_blocks must be a positive integer, got 0"):
        create_policy(name, 0, 16)
    with pytest.raises(ValueError, match="capacity_blocks must be a positive integer, got True"):
        create_policy(name, True, 16)
    with pytest.raises(ValueError, match="block_tokens must be a positive integer, got 0"):
        create_policy(name, 8, 0)
    with pytest.raises(ValueError, match="pin_share must be in"):
        PolicyConfig(pin_share=1.5)


def test_lru_evicts_in_free_order() -> None:
    policy = create_policy("lru", 16, 16)
    for block in range(6):
        policy.on_cached(block, block, META, 0.0)
    for block in (5, 4, 3, 2, 1, 0):  # vLLM frees a request tail first
        policy.on_freed(block, META, 1.0)
    policy.on_hit(3, META, 2.0)
    policy.on_freed(3, META, 3.0)
    assert policy.evict(6, 4.0) == [5, 4, 2, 1, 0, 3]


def _workload(pin_share: float = 0.25):
    return create_policy("workload", 16, 16, PolicyConfig(pin_share=pin_share))


def test_workload_keeps_pinned_blocks_until_nothing_else_is_left() -> None:
    policy = _workload()
    pinned = RequestMeta(category="system", pin_ttl_s=100.0, pin_tokens=32)
    for offset, block in enumerate((10, 11, 12)):
        policy.on_cached(block, offset, pinned, 0.0)  # offsets 0 and 1 pinned (32 tokens)
    for block in (12, 11, 10):
        policy.on_freed(block, pinned, 1.0)
    for block in range(5):
        policy.on_cached(block, block, META, 2.0)
        policy.on_freed(block, META, 50.0)  # newer, so lru would keep these first
    victims = policy.evict(6, 60.0)
    assert set(victims) == {0, 1, 2, 3, 4, 12}
    assert policy.stats.pinned_evictions == 0
    assert policy.evict(1, 60.0)[0] in (10, 11)
    assert policy.stats.pinned_evictions == 1


def test_workload_pin_expires() -> None:
    policy = _workload()
    pinned = RequestMeta(pin_ttl_s=10.0)
    policy.on_cached(7, 0, pinned, 0.0)
    policy.on_freed(7, pinned, 0.0)  # pinned until 10 s
    policy.on_cached(8, 0, META, 0.0)
    policy.on_freed(8, META, 5.0)
    assert policy.evict(1, 6.0) == [8]
    policy.on_cached(9, 0, META, 0.0)
    policy.on_freed(9, META, 11.0)
    assert policy.evict(1, 12.0) == [7]  # expired: back in its queue, older than 9
    assert policy.stats.pinned_evictions == 0


def test_workload_pin_budget_is_enforced() -> None:
    policy = _workload(pin_share=0.25)  # 4 of 16 blocks
    pinned = RequestMeta(pin_ttl_s=100.0)
    for block in range(6):
        policy.on_cached(block, block, pinned, 0.0)
    assert policy.stats.pins_refused == 2
    policy.check_integrity()


def test_workload_prefers_the_category_that_is_reused() -> None:
    """Category "chat" blocks come back after 5 s, "api" blocks never: api blocks go first even when
    they are newer (lru would evict the older chat blocks)."""
    policy = _workload()
    chat, api = RequestMeta(category="chat"), RequestMeta(category="api")
    block = 0
    now = 0.0
    for _ in range(200):
        now += 1.0
        policy.on_cached(block, 1, chat, now, content=block)
        policy.on_freed(block, chat, now)
        policy.on_hit(block, chat, now + 5.0)
        policy.on_freed(block, chat, now + 5.0)
        policy.on_cached(block + 1, 1, api, now, content=block + 1)
        policy.on_freed(block + 1, api, now + 5.5)
        policy.evict(2, now + 5.5)
        block += 2
    policy.on_cached(1000, 1, chat, now, 1000)
    policy.on_freed(1000, chat, now + 6.0)
    policy.on_cached(1001, 1, api, now, 1001)
    policy.on_freed(1001, api, now + 7.0)
    assert policy.evict(1, now + 8.0) == [1001]


def test_workload_breaks_ties_by_deeper_offset() -> None:
    policy = _workload()
    policy.on_cached(1, 0, RequestMeta(category="a"), 0.0)
    policy.on_cached(2, 5, RequestMeta(category="b"), 0.0)
    policy.on_freed(1, RequestMeta(category="a"), 1.0)
    policy.on_freed(2, RequestMeta(category="b"), 1.0)
    assert policy.evict(1, 2.0) == [2]


def test_s3fifo_one_hit_blocks_leave_before_reused_ones() -> None:
    policy = create_policy("s3fifo", 20, 16)
    for block in range(10):
        policy.on_cached(block, 0, META, 0.0, content=block)
        policy.on_freed(block, META, 0.0)
    for block in (0, 1):  # reused: promoted to main when they reach the small queue's head
        policy.on_hit(block, META, 1.0)
        policy.on_freed(block, META, 1.0)
    assert sorted(policy.evict(8, 2.0)) == [2, 3, 4, 5, 6, 7, 8, 9]
    policy.check_integrity()


def test_s3fifo_ghost_content_enters_main() -> None:
    policy = create_policy("s3fifo", 20, 16)
    policy.on_cached(1, 0, META, 0.0, content=99)
    policy.on_freed(1, META, 0.0)
    assert policy.evict(1, 1.0) == [1]
    policy.on_cached(2, 0, META, 2.0, content=99)  # evicted content comes back: straight to main
    policy.on_freed(2, META, 2.0)
    for block in range(3, 6):
        policy.on_cached(block, 0, META, 3.0, content=block)
        policy.on_freed(block, META, 3.0)
    assert policy.evict(2, 4.0) == [3, 4]  # the small queue goes first; 2 waits in main
