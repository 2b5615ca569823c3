"""``SlotIndex``: the host tier's index of block hashes, with an engine eviction policy over its slots, fed per
request as vLLM's pool feeds it (a request's slots are in use until it finishes)."""

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
        assert idx.save(h, j, "r1", DEFAULT_META, 0.0) is not None
    idx.finish("r1", 0.0)
    assert idx.run_length(["a", "b", "c", "d"]) == 2
    assert idx.run_length(["c", "a"]) == 0
    assert idx.run_length([]) == 0
    idx.check_integrity()


def test_saving_a_held_hash_copies_nothing_and_counts_as_use() -> None:
    idx = _index(2)
    assert idx.save("a", 0, "r1", DEFAULT_META, 0.0) is not None
    idx.finish("r1", 0.0)
    assert idx.save("b", 0, "r2", DEFAULT_META, 1.0) is not None
    idx.finish("r2", 1.0)
    assert idx.save("a", 0, "r3", DEFAULT_META, 2.0) is None  # held: no copy, and now most recently used
    idx.finish("r3", 2.0)
    idx.save("c", 0, "r4", DEFAULT_META, 3.0)  # full: lru takes the least recently used, "b"
    assert "a" in idx and "c" in idx and "b" not in idx
    assert idx.counters.saved_blocks == 3 and idx.counters.evicted_blocks == 1
    idx.check_integrity()


def test_slots_of_running_requests_are_never_victims() -> None:
    idx = _index(2)
    sa, sb = idx.save("a", 0, "r1", DEFAULT_META, 0.0), idx.save("b", 1, "r1", DEFAULT_META, 0.0)
    idx.finish("r1", 1.0)
    assert idx.load("a", "r2", DEFAULT_META, 2.0) == sa and idx.load("b", "r2", DEFAULT_META, 2.0) == sb
    assert idx.load("a", "r3", DEFAULT_META, 2.0) == sa  # two requests may use one slot
    assert idx.save("c", 2, "r2", DEFAULT_META, 2.0) is None  # every slot in use: skipped, not overwritten
    assert "a" in idx and "b" in idx and idx.counters.skipped_saves == 1
    idx.check_integrity()
    idx.finish("r2", 3.0)  # "b" is free again; "a" is still used by r3
    assert idx.save("c", 2, "r4", DEFAULT_META, 3.0) == sb
    idx.finish("r3", 4.0)
    idx.finish("r4", 4.0)
    idx.finish("never-seen", 4.0)  # a request that used no slot: nothing to do
    assert idx.counters.hit_blocks == 3
    idx.check_integrity()


def test_the_session_policy_keeps_the_session_due_next() -> None:
    """Three sessions of two blocks escalate in rotation over a tier of four slots: lru evicts the session used
    least recently (the next one due: every request misses); session-due keeps a stable set of sessions."""

    def meta(s: int) -> RequestMeta:
        return RequestMeta(category="edge-session", session=f"s{s}", session_ttl_s=600.0)

    hits = {}
    for policy in ("lru", "session-due"):
        idx, now, hit, n = _index(4, policy), 0.0, 0, 0
        for _ in range(8):
            for s in range(3):
                now, n, rid = now + 1.0, n + 1, f"r{n}"
                run = idx.run_length([f"s{s}/0", f"s{s}/1"])
                for j in range(2):
                    if j < run:
                        idx.load(f"s{s}/{j}", rid, meta(s), now)
                    else:
                        idx.save(f"s{s}/{j}", j, rid, meta(s), now)
                hit += run
                idx.finish(rid, now + 0.5)
                idx.check_integrity()
        hits[policy] = hit
    assert hits["lru"] == 0
    assert hits["session-due"] >= 20  # of 42 warm block accesses (22 measured; session 13, s3fifo 12, lru 0)


def test_a_policy_over_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity_blocks must be a positive integer"):
        _index(0)
