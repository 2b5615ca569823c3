"""``session``: session-aware eviction from the router's session metadata (keys, TTL, closes)."""

from __future__ import annotations

import random

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.registry import create_policy
from tests.fakes.policy_events import drive_random_events

NONE = RequestMeta()


def _session(key: str, ttl: float = 600.0, **kw) -> RequestMeta:
    return RequestMeta(category="edge-session", session=key, session_ttl_s=ttl, **kw)


def _request(policy, blocks: list[int], meta: RequestMeta, now: float, hold_s: float = 0.0) -> None:
    """Cache blocks (new ones) or hit them (known ones), then free them tail first, as vLLM does, ``hold_s``
    seconds later (a prefill on a slow engine holds its blocks that long)."""
    for offset, block in enumerate(blocks):
        if policy.knows(block):
            policy.on_hit(block, meta, now)
        else:
            policy.on_cached(block, offset, meta, now, block)
    for block in reversed(blocks):
        policy.on_freed(block, meta, now + hold_s)


@pytest.mark.parametrize("name", ["session", "session-due"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_contract_with_random_session_events(name: str, seed: int) -> None:
    rng = random.Random(seed)
    policy = create_policy(name, 48, 16, PolicyConfig(session_share=0.5))
    keys = [f"s{i}" for i in range(6)]

    def meta_of(kind: str) -> RequestMeta:  # one random request's metadata per event
        return rng.choice(
            [
                NONE,
                _session(rng.choice(keys), ttl=rng.choice([5.0, 50.0])),
                _session(rng.choice(keys), session_final=True),
                RequestMeta(closed_sessions=(rng.choice(keys),)),
            ]
        )

    drive_random_events(policy, rng, 4000, meta_of, check_each_step=True)


def test_closed_session_goes_first_then_unprotected_then_protected() -> None:
    policy = create_policy("session", 100, 16, PolicyConfig(session_share=0.2))  # 20 protected blocks
    _request(policy, [1, 2, 3], _session("a"), 1.0)  # protected (fits the budget)
    _request(policy, [10, 11], NONE, 2.0)  # no session
    _request(policy, [20, 21], _session("b"), 3.0)  # protected too
    _request(
        policy,
        [30],
        NONE,
        4.0,
    )
    _request(policy, [31], RequestMeta(closed_sessions=("b",)), 5.0)  # DELETE of b announced
    victims = policy.evict(8, 6.0)
    assert victims[:2] == [21, 20]  # closed b, in the order it was freed
    assert victims[2:5] == [11, 10, 30]  # then lru among the rest (no session; freed tail first)
    assert victims[5] == 31
    assert victims[6:] == [3, 2]  # protected a last, deepest block first
    assert policy.sessions_closed == 1
    own = policy.own_stats()  # what the engine's stats marker and the router's /metrics show
    assert own["session_evictions"] == {
        "closed": 2,
        "over_budget": 0,
        "stale": 0,
        "unprotected": 4,
        "protected": 2,
    }
    assert (own["session_live"], own["session_protected"], own["session_closed"]) == (1, 1, 1)
    assert own["session_protected_blocks"] == 1 and own["session_budget_blocks"] == 20  # block 1; 0.2 of 100


def test_live_session_survives_a_flood_that_lru_loses() -> None:
    for name, survives in (("session", True), ("lru", False)):
        policy = create_policy(name, 40, 16)
        context = list(range(10))
        _request(policy, context, _session("edge"), 0.0)
        block = 100
        for t in range(1, 60):  # one-off prompts, 3x the cache in all
            _request(policy, [block, block + 1], NONE, float(t))
            block += 2
            overflow = policy.num_cached() - 40
            if overflow > 0:
                policy.evict(overflow, float(t))
        assert all(policy.knows(b) for b in context) is survives, name


def test_ttl_expiry_closes_the_session() -> None:
    policy = create_policy("session", 100, 16)
    _request(policy, [1, 2], _session("a", ttl=10.0), 0.0)
    _request(policy, [5], NONE, 1.0)
    assert policy.evict(1, 5.0) == [5]  # a is live and protected
    _request(policy, [6], NONE, 6.0)
    assert policy.evict(2, 11.0) == [2, 1]  # a expired at 10 s: its blocks go first
    assert policy.sessions_expired == 1


def test_protection_stays_within_the_share() -> None:
    policy = create_policy("session", 10, 16, PolicyConfig(session_share=0.5))
    _request(policy, [1, 2, 3], _session("a"), 0.0)
    _request(policy, [4, 5, 6], _session("b"), 1.0)  # protected at its first block, then 3 + 3 > 5
    _request(policy, [7], NONE, 2.0)
    assert policy.evict(4, 3.0) == [6, 7, 5, 4]  # b's tail down to the budget, lru, then b
    policy.check_integrity()


@pytest.mark.parametrize("name", ["session", "session-due"])
def test_a_session_as_large_as_the_cache_leaves_no_budget_and_no_crash(name: str) -> None:
    """A session owning the whole cache leaves a protection budget of 0. It used to go negative, and
    evict then looked for a protected session that did not exist (StopIteration inside vLLM's
    allocation: an engine crash)."""
    policy = create_policy(name, 8, 16)
    _request(policy, [1, 2, 3], _session("small"), 0.0)  # protected
    assert policy.evict(3, 0.5) == [3, 2, 1]  # the only candidates
    _request(policy, [20, 21], NONE, 0.6)
    _request(policy, list(range(10, 18)), _session("big"), 1.0)  # 8 blocks: a prompt as large as the cache
    assert policy.own_stats()["session_budget_blocks"] == 0
    assert policy.evict(10, 2.0) == [
        *range(17, 9, -1),
        21,
        20,
    ]  # big over the budget (deepest first), then lru
    policy.check_integrity()


def test_final_request_closes_its_session() -> None:
    policy = create_policy("session", 100, 16)
    _request(policy, [1, 2], _session("a", session_final=True), 0.0)
    _request(policy, [3], NONE, 1.0)
    assert policy.evict(2, 2.0) == [2, 1]


def test_unknown_inner_policy_is_refused_with_the_valid_names() -> None:
    from server.engine.prefix_cache.registry import UnknownPolicyError

    with pytest.raises(UnknownPolicyError, match="'fifo'.*valid: density, guarded, lru, s3fifo"):
        create_policy("session", 10, 16, PolicyConfig(session_inner="fifo"))


def test_bad_session_config_is_refused() -> None:
    with pytest.raises(ValueError, match="session_share must be in"):
        PolicyConfig(session_share=1.5)
    with pytest.raises(ValueError, match="session_idle_min_s >= 0"):
        PolicyConfig(session_idle_min_s=-1.0)
    with pytest.raises(ValueError, match="session_inner cannot be 'session'"):
        PolicyConfig(session_inner="session")


def test_idle_session_loses_protection() -> None:
    policy = create_policy("session", 100, 16, PolicyConfig(session_idle_factor=2.0))
    for t in (0.0, 10.0, 20.0):  # session b: requests 10 s apart, so the mean gap is 10 s
        _request(policy, [50 + int(t)], _session("b"), t)
    _request(policy, [1, 2], _session("a"), 20.0)
    _request(policy, [3], NONE, 21.0)
    assert policy.evict(1, 25.0) == [3]  # a idle 5 s: still protected
    _request(policy, [4], NONE, 26.0)
    # a and b idle 25 s > 2 x 10 s: their blocks went stale and go before lru's block 4
    assert set(policy.evict(5, 45.0)) == {1, 2, 50, 60, 70}
    assert policy.evict(1, 45.0) == [4]
    assert policy.sessions_idled >= 1


def test_the_time_a_request_holds_its_blocks_is_not_a_gap_between_requests() -> None:
    """The idle rule compares idleness with the gaps between a session's requests (end of one to the
    start of the next). Counting a request's own duration as a gap (as the vLLM bench's 1.3 s CPU
    prefills did) shrank the mean gap and took protection from sessions in use."""
    policy = create_policy("session", 100, 16, PolicyConfig(session_idle_factor=2.0))
    for start in (0.0, 10.0, 20.0, 30.0):  # a: one request every 10 s, each holding its blocks 3 s
        _request(policy, [1, 2, 3], _session("a"), start, hold_s=3.0)
    assert policy.mean_gap_s == pytest.approx(7.0)
    _request(policy, [9], NONE, 34.0)
    assert policy.evict(1, 45.0) == [9]  # a idle 12 s < 2 x 7 s: still protected
    assert policy.sessions_idled == 0


def test_back_to_back_requests_do_not_make_a_short_pause_idle() -> None:
    policy = create_policy("session", 100, 16, PolicyConfig(session_idle_min_s=5.0))
    for i in range(5):  # requests 10 ms apart: the mean gap is 10 ms
        _request(policy, [1, 2], _session("a"), i * 0.01)
    _request(policy, [9], NONE, 0.1)
    assert policy.evict(1, 1.0) == [9]  # idle 1 s, far beyond 2 x 10 ms but under the 5 s floor
    assert policy.sessions_idled == 0


def test_session_keys_round_trip_and_bad_values_are_refused() -> None:
    from client_edge.protocol.engine_xargs import InvalidRequestMeta, encode_request_meta, parse_request_meta

    meta = _session("3f1c", ttl=60.0, session_final=True, closed_sessions=("a1", "b2"))
    xargs = dict(encode_request_meta(meta))
    assert xargs["xedge_closed_sessions"] == "a1,b2" and xargs["xedge_session_final"] == 1
    assert parse_request_meta(xargs) == meta
    for bad in (
        {"xedge_session": ""},
        {"xedge_session_ttl_s": 0},
        {"xedge_session_final": "yes"},
        {"xedge_closed_sessions": 5},
        {"xedge_closed_sessions": "a,,b"},
        {"xedge_closed_sessions": ",".join(f"k{i}" for i in range(33))},
    ):
        with pytest.raises(InvalidRequestMeta, match="xedge "):
            parse_request_meta(bad)


def test_session_due_gives_up_the_session_due_last() -> None:
    """Round 1: a, b, c; round 2: b, c, a. b and c come back every 2 s, a took 5 s: a is due last (at 10 s,
    b at 5 s, c at 6 s), so its blocks go first, deepest first; ``session`` takes the latest protected (c)."""
    victims = {}
    for name in ("session", "session-due"):
        policy = create_policy(name, 100, 16)
        blocks = {"a": [1, 2, 3], "b": [11, 12, 13], "c": [21, 22, 23]}
        for t, key in enumerate(["a", "b", "c", "b", "c", "a"]):
            _request(policy, blocks[key], _session(key), float(t))
        victims[name] = policy.evict(2, 6.0)
        policy.check_integrity()
    assert victims == {"session": [23, 22], "session-due": [3, 2]}


def test_session_due_keeps_the_sessions_due_next_in_a_rotation() -> None:
    """Sessions escalating in turn, their contexts twice the cache: lru keeps nothing it will use, session
    keeps the sessions it protected first, session-due what the offline optimum keeps."""
    from server.research.cache_sim.belady import BeladyPolicy
    from server.research.cache_sim.generators import edge_rotation
    from server.research.cache_sim.replay import replay

    trace = edge_rotation(0, num_sessions=8, rounds=6, context_blocks=(10, 20))
    capacity = sum(len(b) for b in trace.blocks[-8:]) // 2
    hit = {
        name: replay(trace, create_policy(name, capacity, trace.block_tokens)).token_hit_ratio
        for name in ("lru", "session", "session-due")
    }
    belady = replay(trace, BeladyPolicy(capacity, trace.block_tokens)).token_hit_ratio
    assert hit["lru"] < hit["session"] < hit["session-due"], hit
    assert hit["session-due"] >= belady - 0.01, (hit, belady)


def test_session_due_counts_idleness_in_requests_not_seconds() -> None:
    """A session is idle once more than 2 x the mean gap (in session requests) of other sessions' requests
    started since its last one; time alone (500 s here, within the 600 s TTL) idles nothing."""
    policy = create_policy("session-due", 100, 16)
    blocks = {key: [10 * i + j for j in range(3)] for i, key in enumerate("abcdefg", start=1)}
    for t, key in enumerate("abab"):  # mean gap: 2 requests
        _request(policy, blocks[key], _session(key), float(t))
    assert policy.evict(1, 500.0) == [blocks["b"][2]]  # b is due last (turn 4 + 2 against a's 3 + 2)
    assert policy.sessions_idled == 0
    for t, key in enumerate("cdefg", start=501):  # five other sessions' requests: a (6 ago) and b (5) idle
        _request(policy, blocks[key], _session(key), float(t))
    assert policy.evict(3, 510.0) == [blocks["a"][2], blocks["a"][1], blocks["a"][0]]
    assert policy.sessions_idled == 2
    policy.check_integrity()
