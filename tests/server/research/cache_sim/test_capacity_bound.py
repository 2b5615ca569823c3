"""The capacity bound of sessions taking turns: no policy, belady included, hits more than it allows."""

from __future__ import annotations

import random

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.registry import policy_class
from server.research.cache_sim.capacity_bound import max_hit_blocks
from server.research.cache_sim.replay import replay
from server.research.cache_sim.trace import Trace, prefix_keys

BLOCK = 16


def _rotation(rng: random.Random, k: int, rounds: int) -> list[tuple[int, list[int]]]:
    """k sessions with their own contexts (no shared blocks), each request adding 1-2 new blocks."""
    contexts = [[rng.randrange(1 << 30) for _ in range(rng.randint(4, 12))] for _ in range(k)]
    requests = [(s, list(c)) for s, c in enumerate(contexts)]
    for _ in range(rounds):
        for s in rng.sample(range(k), k) if rng.random() < 0.3 else range(k):
            contexts[s].extend(rng.randrange(1 << 30) for _ in range(rng.randint(1, 2)))
            requests.append((s, list(contexts[s])))
    return requests


def _trace(requests: list[tuple[int, list[int]]]) -> Trace:
    paths: dict = {}
    blocks = [prefix_keys(content, paths) for _, content in requests]
    metas = [RequestMeta(category="edge-session", session=f"s{s}", session_ttl_s=600.0) for s, _ in requests]
    n = len(requests)
    return Trace("mooncake", BLOCK, [float(i) for i in range(n)], [len(c) * BLOCK for _, c in requests],
                 [1] * n, blocks, metas)  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_no_policy_hits_more_than_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(2, 8)
    requests = _rotation(rng, k, rounds=4)
    trace = _trace(requests)
    capacity = rng.randint(15, 60)
    bound = max_hit_blocks([(str(s), len(c)) for s, c in requests], capacity)
    firsts = set()
    for name in ("belady", "lru", "session", "session-due"):
        hits = replay(
            trace, policy_class(name, allow_oracle=True)(capacity, BLOCK), record=True
        ).request_hit_tokens
        later = 0
        firsts.clear()
        for (s, _), h in zip(requests, hits or [], strict=True):
            if s in firsts:
                later += h // BLOCK
            firsts.add(s)
        assert later <= bound + 1e-9, (name, later, bound, k, capacity)


def test_bound_by_hand() -> None:
    # two sessions alternating, prompts of 4 then 5 blocks, a cache of 6: while one runs (4-5 blocks)
    # only 1-2 blocks of the other can stay, and one request lies between a session's two requests
    requests = [("a", 4), ("b", 4), ("a", 5), ("b", 5)]
    assert max_hit_blocks(requests, 6) == (6 - 4) + (6 - 5)  # requests 1 and 2 lie between: 2 + 1
    assert max_hit_blocks(requests, 100) == 4 + 4  # a large cache: each hit is its prompt less one block
    assert max_hit_blocks([("a", 4), ("a", 5)], 3) == 4  # back to back: nothing lies between
    with pytest.raises(ValueError, match="capacity_blocks must be >= 1, got 0"):
        max_hit_blocks(requests, 0)
