"""The simulator's ``belady`` is optimal: on tiny traces no sequence of eviction choices does better.

A brute force replays the trace once per sequence of choices (which free blocks each eviction takes),
through the simulator itself, so both obey the same rules (in-use blocks stay, contiguous-prefix hits).
Belady's MIN maximises block hits; with whole blocks only that is the token hits too. (A partial last block
that is reused counts fewer tokens than a whole one, and MIN ignores that: then the brute force can beat it
in tokens, not in blocks.)"""

from __future__ import annotations

import itertools
import random

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.lru import LRUPolicy
from server.research.cache_sim.belady import BeladyPolicy
from server.research.cache_sim.replay import ServiceModel, replay
from server.research.cache_sim.trace import Trace, prefix_keys

BT = 4


class _Scripted(LRUPolicy):
    """Evicts the ``script[k]``-th combination of free blocks at its k-th eviction (0 past the script)
    and records how many combinations each eviction had."""

    name = "scripted"

    def __init__(self, capacity_blocks: int, script: list[int]) -> None:
        super().__init__(capacity_blocks, BT)
        self.script = script
        self.options: list[int] = []

    def _choose(self, n: int, now: float) -> list[int]:
        combos = list(itertools.combinations(sorted(self._free), n))
        k = len(self.options)
        self.options.append(len(combos))
        victims = combos[self.script[k] if k < len(self.script) else 0]
        for block in victims:
            del self._free[block]
        return list(victims)


def _best(trace: Trace, capacity: int, service: ServiceModel, metric: str) -> int:
    """The most ``metric`` any sequence of eviction choices gets (an odometer over the choices)."""
    best, script = -1, []
    while True:
        policy = _Scripted(capacity, script)
        best = max(best, getattr(replay(trace, policy, service), metric))
        script = script + [0] * (len(policy.options) - len(script))
        i = len(policy.options) - 1
        while i >= 0 and script[i] + 1 >= policy.options[i]:
            i -= 1
        if i < 0:
            return best
        script = script[:i] + [script[i] + 1]


def _tiny_trace(seed: int, partial: bool) -> Trace:
    rng = random.Random(seed)
    conversations = [[rng.randrange(3)] for _ in range(3)]
    paths: dict = {}
    times, inputs, outputs, blocks = [], [], [], []
    for _ in range(rng.randrange(3, 8)):
        conv = conversations[rng.randrange(3)]
        if rng.random() < 0.5:
            conv.append(rng.randrange(4))
        keys = prefix_keys(conv[: rng.randrange(1, len(conv) + 1)], paths)
        times.append((times[-1] if times else 0.0) + rng.random())
        inputs.append(BT * len(keys) - (rng.randrange(BT) if partial else 0))
        outputs.append(rng.randrange(4))
        blocks.append(keys)
    return Trace("mooncake", BT, times, inputs, outputs, blocks, [RequestMeta()] * len(times))


@pytest.mark.parametrize(
    ("partial", "metric", "service"),
    [
        (False, "hit_tokens", ServiceModel()),
        (True, "hit_blocks", ServiceModel()),
        (False, "hit_blocks", ServiceModel(decode_s_per_token=0.5)),  # requests overlap
    ],
    ids=["whole-blocks-tokens", "partial-blocks-blocks", "overlapping-requests"],
)
def test_belady_matches_the_brute_force_optimum(partial: bool, metric: str, service: ServiceModel) -> None:
    checked = 0
    for seed in range(80):
        trace = _tiny_trace(seed, partial)
        for capacity in (1, 2, 3):
            belady = getattr(replay(trace, BeladyPolicy(capacity, BT), service), metric)
            best = _best(trace, capacity, service, metric)
            assert belady == best, (seed, capacity, trace.blocks, trace.input_tokens)
            checked += best > getattr(replay(trace, LRUPolicy(capacity, BT), service), metric)
    assert checked > 0, "the traces must leave room to beat lru, or the check is empty"
