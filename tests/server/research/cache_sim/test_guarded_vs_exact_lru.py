"""``guarded`` against an LRU and a Belady computed here, on small seeded adversarial traces.

The reference LRU below is written independently of the simulator's: a request hits its longest cached
prefix, its cached blocks are in use while it is served (at once), its missing blocks are cached evicting the
least recently freed blocks (those that do not fit are not cached), and its blocks are freed tail first."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.registry import create_policy
from server.research.cache_sim.belady import BeladyPolicy
from server.research.cache_sim.generators import GENERATORS, footprint_blocks, generate
from server.research.cache_sim.replay import replay
from server.research.cache_sim.trace import Trace, prefix_keys

BT = 16
KINDS = ("loop", "scan", "zipf", "conversation", "mix")


def exact_lru_hit_blocks(trace: Trace, capacity: int) -> int:
    cached: OrderedDict[int, None] = OrderedDict()  # every cached block, least recently freed first
    hits = 0
    for keys in trace.blocks:
        n_hit = 0
        while n_hit < len(keys) and keys[n_hit] in cached:
            n_hit += 1
        hits += n_hit
        in_use = {k for k in keys if k in cached}
        missing = [k for k in keys if k not in cached]
        overflow = len(cached) + len(missing) - capacity
        if overflow > 0:
            for victim in [k for k in cached if k not in in_use][:overflow]:
                del cached[victim]
            missing = missing[: capacity - len(cached)]
        for k in missing:
            cached[k] = None
        for k in reversed(keys):
            if k in cached:
                cached.move_to_end(k)
    return hits


def adversarial_trace(seed: int, num_requests: int = 300) -> Trace:
    """Cyclic loops (LRU's worst case), scans among popular prompts, Zipf-popular prompts, growing
    conversations, or a mix; each request's blocks are prefix paths of its content, categories random."""
    rng = random.Random(seed)
    kind = KINDS[seed % len(KINDS)]
    content = iter(range(10**6, 10**9))
    prompts = [[next(content) for _ in range(rng.randrange(1, 6))] for _ in range(rng.randrange(2, 30))]
    requests: list[tuple[list[int], str]] = []
    for i in range(num_requests):
        if kind == "loop":
            blocks, category = prompts[i % len(prompts)], "a"
        elif kind == "scan" and rng.random() < 0.5:
            blocks, category = [next(content) for _ in range(rng.randrange(1, 4))], "scan"
        elif kind == "zipf":
            blocks, category = (
                prompts[min(int(rng.paretovariate(1.0)) - 1, len(prompts) - 1)],
                rng.choice("ab"),
            )
        elif kind == "conversation":
            j = rng.randrange(len(prompts))
            prompts[j] = blocks = prompts[j] + [next(content) for _ in range(rng.randrange(0, 3))]
            category = f"turn{min(len(blocks), 4)}"
        elif kind == "mix" and rng.random() < 0.3:
            blocks, category = [next(content) for _ in range(rng.randrange(1, 8))], rng.choice("abc")
        else:
            blocks, category = prompts[rng.randrange(len(prompts))], rng.choice("abc")
        requests.append((blocks, category))
    paths: dict = {}
    keys_of = [prefix_keys(blocks, paths) for blocks, _ in requests]
    times = [float(i) + rng.random() for i in range(num_requests)]
    return Trace(
        "mooncake",
        BT,
        times,
        [BT * len(k) for k in keys_of],
        [0] * num_requests,
        keys_of,
        [RequestMeta(category=c) for _, c in requests],
    )


def _traces() -> list:
    out = [pytest.param(f"adversarial-{s}", adversarial_trace(s), id=f"adversarial-{s}") for s in range(10)]
    out += [pytest.param(n, generate(n, seed=1, num_requests=400), id=n) for n in sorted(GENERATORS)]
    return out


def _capacities(trace: Trace) -> list[int]:
    distinct = footprint_blocks(trace)
    return sorted({max(1, int(share * distinct)) for share in (0.05, 0.15, 0.4)})


@pytest.mark.parametrize(("name", "trace"), _traces())
def test_the_simulators_lru_is_the_reference_lru(name: str, trace: Trace) -> None:
    for capacity in _capacities(trace):
        got = replay(trace, create_policy("lru", capacity, trace.block_tokens)).hit_blocks
        assert got == exact_lru_hit_blocks(trace, capacity), (name, capacity)


@pytest.mark.parametrize(("name", "trace"), _traces())
def test_guardeds_lru_shadow_counts_exactly_the_hits_of_lru(name: str, trace: Trace) -> None:
    """With a margin no expert can reach the pool runs lru throughout, so the lru shadow, fed with the
    pool's accesses, must count exactly lru's hits. A shadow that evicted the current prompt's own hits
    (in use in the pool) counted fewer (chat at 5 %: 6,527 instead of 6,894 on 1,500 requests; agent
    2,827 fewer): lru looked worse than it was, the pool seemed ahead of it, and the loss budget meant
    nothing."""
    config = PolicyConfig(guard_margin=0.999)
    for capacity in _capacities(trace):
        policy = create_policy("guarded", capacity, trace.block_tokens, config)
        pool = replay(trace, policy)
        assert policy.switches == 0 and policy.leader == "lru"
        exact = exact_lru_hit_blocks(trace, capacity)
        assert pool.hit_blocks == exact, (name, capacity)
        assert policy.shadow_hits["lru"] == exact, (name, capacity, policy.own_stats())
        policy.check_integrity()


@pytest.mark.parametrize("seed", range(10))
def test_guarded_stays_within_its_budget_of_lru_and_below_belady(seed: int) -> None:
    """What ``guarded``'s docstring claims, checked on traces nobody tuned it on: at most the loss budget
    (``guard_slack`` of the accesses) plus one transient per change of leader below the exact lru, in
    block hits (no change of leader: exactly lru), and never above Belady."""
    trace = adversarial_trace(seed)
    slack = PolicyConfig().guard_slack
    for capacity in _capacities(trace):
        policy = create_policy("guarded", capacity, BT)
        guarded = replay(trace, policy).hit_blocks
        policy.check_integrity()
        lru = exact_lru_hit_blocks(trace, capacity)
        allowed = slack * policy.accesses + policy.switches * capacity
        assert lru - guarded <= allowed, (seed, capacity, lru, guarded, policy.own_stats())
        assert guarded <= replay(trace, BeladyPolicy(capacity, BT)).hit_blocks, (seed, capacity)
