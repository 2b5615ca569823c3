"""``SlotIndex``: the host tier's index of block hashes, with an engine eviction policy over its slots."""

from __future__ import annotations

import pytest

from client_edge.protocol.engine_xargs import DEFAULT_META, RequestMeta
from server.engine.kv_tier.slots import SlotIndex
from server.engine.prefix_cache.registry import create_policy

BLOCK = 32


def _index(capacity: int, policy: str = "lru") -> SlotIndex:
    return SlotIndex(create_policy(policy, capacity, BLOCK))


def test_a_prefix_loads_only_as_an_unbroken_run() -> None:
    idx = _index(4)
    for j, h in enumerate(("a", "b", "d")):
        assert idx.save(h, j, DEFAULT_META, 0.0) is not None
    assert idx.run_length(["a", "b", "c", "d"]) == 2
    assert idx.run_length(["c", "a"]) == 0
    assert idx.run_length([]) == 0
    idx.check_integrity()


def test_saving_a_held_hash_copies_nothing_and_counts_as_use() -> None:
    idx = _index(2)
    assert idx.save("a", 0, DEFAULT_META, 0.0) is not None and idx.save("b", 1, DEFAULT_META, 1.0) is not None
    assert idx.save("a", 0, DEFAULT_META, 2.0) is None  # held: no copy, and now most recently used
    idx.save("c", 2, DEFAULT_META, 3.0)  # full: lru takes the least recently used, "b"
    assert "a" in idx and "c" in idx and "b" not in idx
    assert idx.counters.saved_blocks == 3 and idx.counters.evicted_blocks == 1
    idx.check_integrity()


def test_slots_loaded_this_step_are_never_taken_by_its_saves() -> None:
    idx = _index(2)
    sa, sb = idx.save("a", 0, DEFAULT_META, 0.0), idx.save("b", 1, DEFAULT_META, 1.0)
    idx.end_step(1.0)
    assert idx.load("a", DEFAULT_META, 2.0) == sa and idx.load("b", DEFAULT_META, 2.0) == sb
    assert idx.load("a", DEFAULT_META, 2.0) == sa  # two requests may load one slot in a step
    assert idx.save("c", 2, DEFAULT_META, 2.0) is None  # every slot is being loaded: skipped, not overwritten
    assert "a" in idx and "b" in idx and idx.counters.skipped_saves == 1
    idx.end_step(2.0)
    idx.check_integrity()
    assert idx.save("c", 2, DEFAULT_META, 3.0) in (sa, sb)
    assert idx.counters.hit_blocks == 3
    idx.check_integrity()


def test_the_session_policy_keeps_the_session_due_next() -> None:
    """A rotation of three sessions over a tier that holds two: lru evicts the session used least recently
    (the next one due: every access misses); session-due evicts the one used most recently (due last)."""
    def meta(s: int) -> RequestMeta:
        return RequestMeta(category="edge-session", session=f"s{s}", session_ttl_s=600.0)

    hits = {}
    for policy in ("lru", "session-due"):
        idx, now, hit = _index(2, policy), 0.0, 0
        for _ in range(6):
            for s in range(3):
                now += 1.0
                h = f"s{s}"
                if h in idx:
                    idx.load(h, meta(s), now)
                    hit += 1
                else:
                    idx.save(h, 0, meta(s), now)
                idx.end_step(now)
        idx.check_integrity()
        hits[policy] = hit
    assert hits["lru"] == 0
    assert hits["session-due"] >= 7  # 8 of the 15 warm accesses (the optimum for two slots and three sessions)


def test_a_policy_over_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity_blocks must be a positive integer"):
        _index(0)
