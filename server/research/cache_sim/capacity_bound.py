"""An upper bound on prefix-cache hits for sessions that take turns, whatever the eviction policy.

A block hit by a session's request must have stayed cached since that session's previous request, so
through every request in between; while request j runs the cache holds its whole prompt (``P_j``
blocks: vLLM allocates a prompt at once), so at most ``C - P_j`` cached blocks then belong to other
sessions' next requests. If at least ``m`` requests lie between any two consecutive requests of a
session, ``m x (all hits) <= sum over those j of (C - P_j)``. Each hit is also at most its prompt less
one block (the engine computes at least a prompt's last token). In a rotation of K sessions m = K - 1:
the mean hit is about (C - P) / (K - 1) blocks, which is what makes escalating sessions whose contexts
exceed the cache recompute most of their context under any policy (bench/results/prefix_cache/notes.md).
It assumes sessions share no blocks (a prefix common to several sessions is in use by each of their
requests, and would be counted both as held and as kept).
"""

from __future__ import annotations

from collections.abc import Sequence


def max_hit_blocks(requests: Sequence[tuple[str, int]], capacity_blocks: int) -> float:
    """The most blocks all requests after each session's first can hit. ``requests``: (session, prompt
    blocks) in arrival order, one request at a time; ``capacity_blocks``: the cache."""
    if capacity_blocks < 1:
        raise ValueError(f"capacity_blocks must be >= 1, got {capacity_blocks}")
    last: dict[str, int] = {}
    between: list[int] = []
    inside: set[int] = set()
    ceiling = 0
    for i, (session, blocks) in enumerate(requests):
        if session in last:
            between.append(i - last[session] - 1)
            inside.update(range(last[session] + 1, i))
            ceiling += max(0, blocks - 1)
        last[session] = i
    if not between:
        return 0.0
    m = min(between)
    if m == 0:  # a session's requests back to back: only the per-request ceiling holds
        return float(ceiling)
    kept = sum(max(0, capacity_blocks - requests[j][1]) for j in inside) / m
    return min(kept, float(ceiling))
