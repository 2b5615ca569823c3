"""Random cache / hit / free / evict / drop events against an eviction policy, with a model of which blocks
are free: the contract every policy must keep (shared by the policy and the session-policy tests)."""

from __future__ import annotations

import random
from collections.abc import Callable

from client_edge.protocol.engine_xargs import RequestMeta


def drive_random_events(
    policy,
    rng: random.Random,
    steps: int,
    meta_of: Callable[[str], RequestMeta],
    *,
    check_each_step: bool = False,
):
    """Run ``steps`` random events; ``meta_of(kind)`` gives the request metadata of a ``cached`` / ``hit`` /
    ``freed`` event. Asserts after every event that the policy tracks exactly the free blocks and that an
    eviction returns ``n`` distinct free blocks it then forgets; ``check_integrity`` at the end (or every
    step). Returns the policy."""
    in_use: dict[int, int] = {}
    free: set[int] = set()
    next_id, now = 0, 0.0
    for _ in range(steps):
        now += rng.random()
        op = rng.random()
        if op < 0.3:
            block, next_id = next_id, next_id + 1
            policy.on_cached(block, rng.randrange(8), meta_of("cached"), now, block)
            in_use[block] = 1
        elif op < 0.5 and free:
            block = rng.choice(sorted(free))
            free.discard(block)
            policy.on_hit(block, meta_of("hit"), now)
            in_use[block] = 1
        elif op < 0.55 and in_use:
            block = rng.choice(sorted(in_use))
            policy.on_hit(block, meta_of("hit"), now)  # a second request shares an in-use block
            in_use[block] += 1
        elif op < 0.8 and in_use:
            block = rng.choice(sorted(in_use))
            in_use[block] -= 1
            if in_use[block] == 0:
                del in_use[block]
                free.add(block)
                policy.on_freed(block, meta_of("freed"), now)
        elif op < 0.95 and free:
            n = rng.randrange(1, len(free) + 1)
            victims = policy.evict(n, now)
            assert len(victims) == n == len(set(victims))
            assert set(victims) <= free, f"{type(policy).__name__} evicted blocks that were not free"
            free -= set(victims)
            assert not any(policy.knows(v) for v in victims)
        elif free:
            block = rng.choice(sorted(free))
            policy.on_dropped(block)
            free.discard(block)
        assert len(policy) == len(free)
        if check_each_step:
            policy.check_integrity()
    policy.check_integrity()
    return policy
