"""The helpers of bench/prefix_cache_limits.py: conversations, in-sample statistics, the fixed-statistics
hook of ``density``, the knapsack bound and the idle-age probe (small synthetic traces, no real replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.registry import create_policy
from server.engine.prefix_cache.reuse_histogram import ReuseHistogram, bucket
from server.research.cache_sim.conversations import (
    bin_label,
    bin_labels,
    continuation_by,
    conversations,
    relabel,
)
from server.research.cache_sim.hindsight import (
    IdleAgeProbe,
    in_sample_histograms,
    knapsack_fit,
    reuse_gaps,
)
from server.research.cache_sim.replay import replay
from server.research.cache_sim.trace import Trace, read_trace

# (timestamp ms, input tokens, hash ids): conversation A (blocks 1, 2), B (1, 7), one request of C (1, 9)
_ROWS = [
    (0, 1500, [1, 2, 3]),  # A turn 1, partial last block
    (5_000, 1024, [1, 7]),  # B turn 1
    (10_000, 2048, [1, 2, 5, 6]),  # A turn 2
    (50_000, 1024, [1, 9]),  # C turn 1
    (100_000, 1300, [1, 7, 8]),  # B turn 2, partial last block
    (130_000, 2560, [1, 2, 5, 6, 4]),  # A turn 3
]


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    path = tmp_path / "t.jsonl"
    lines = [
        json.dumps({"timestamp": t, "input_length": n, "output_length": 10 * (i + 1), "hash_ids": h})
        for i, (t, n, h) in enumerate(_ROWS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return read_trace(path)


def test_conversations_turns_and_gaps(trace: Trace) -> None:
    conv = conversations(trace)
    assert conv.num_conversations == 3
    assert conv.turns == [1, 1, 2, 1, 2, 3]
    assert [m.category for m in trace.metas] == ["turn1", "turn1", "turn2", "turn1", "turn2", "turn3"]
    assert conv.prev_gap_s == [None, None, 10.0, None, 95.0, 120.0]
    assert conv.next_gap_s == [10.0, 95.0, 120.0, None, None, None]
    stats = continuation_by([str(t) for t in conv.turns], conv, ["1", "2", "3", "4"])
    assert list(stats) == ["1", "2", "3"]  # empty groups are left out
    assert stats["1"].requests == 3 and stats["1"].continue_share == pytest.approx(2 / 3)
    assert stats["1"].median_next_gap_s == pytest.approx(52.5)
    assert stats["3"].median_next_gap_s is None
    with pytest.raises(ValueError, match="not in the order"):
        continuation_by(["x"] * len(trace), conv, ["1"])


def test_relabel_and_bins(trace: Trace) -> None:
    labels = ["a", "b", "a", "b", "a", "b"]
    relabelled = relabel(trace, labels)
    assert [m.category for m in relabelled.metas] == labels
    assert relabelled.blocks == trace.blocks and relabelled.times_s == trace.times_s
    with pytest.raises(ValueError, match="5 labels for 6 requests"):
        relabel(trace, labels[:5])
    assert bin_labels((60, 240), "s") == ["<60s", "60-240s", ">=240s"]
    assert [bin_label(v, (60, 240), "s") for v in (0, 59.9, 60, 239, 240, 1e9)] == [
        "<60s",
        "<60s",
        "60-240s",
        "60-240s",
        ">=240s",
        ">=240s",
    ]


def test_in_sample_histograms_are_what_density_measures_when_nothing_is_evicted(trace: Trace) -> None:
    """With room for every block, counts that never decay and no refresh, the online policy observes
    every idle period and every reuse: its statistics must equal the in-sample histograms exactly."""
    hists = in_sample_histograms(trace)
    assert set(hists) == {"turn1", "turn1/partial", "turn2", "turn2/partial", "turn3"}
    # turn1 full blocks: A (1, 2), B (1, 7), C (1, 9); all reused but C's block 9
    assert hists["turn1"].periods == 6 and sum(hists["turn1"].reuses) == 5
    assert hists["turn1/partial"].periods == 1 and sum(hists["turn1/partial"].reuses) == 0
    policy = create_policy("density", 1000, 512, PolicyConfig(density_refresh=10**9, density_decay=1.0))
    result = replay(trace, policy)
    assert result.evictions == 0
    for category, hist in hists.items():
        for idle_s in (0.0, 8.0, 50.0, 100.0):
            assert policy.reuse_probability(category, idle_s) == pytest.approx(
                hist.reuse_probability(idle_s, policy.config.density_horizon_s)
            ), (category, idle_s)


def _hist(gap_s: float | None, periods: int) -> ReuseHistogram:
    hist = ReuseHistogram()
    for _ in range(periods):
        hist.start_period()
        if gap_s is not None:
            hist.add_reuse(gap_s)
    return hist


def test_fixed_histograms_decide_and_are_never_refreshed() -> None:
    """Given statistics say "soon" blocks come back after 100 s and "never" blocks do not: the policy evicts
    by them, and what it measures afterwards (the opposite) does not replace them."""
    config = PolicyConfig(density_refresh=5)
    policy = create_policy("density", 1000, 16, config)
    fixed = {"soon": _hist(100.0, 50), "never": _hist(None, 50)}
    policy.use_fixed_histograms(fixed)
    soon, never = RequestMeta(category="soon"), RequestMeta(category="never")
    # measured behaviour contradicts the fixed statistics: "never" blocks come back, "soon" ones do not
    for i in range(40):
        policy.on_cached(100 + i, 1, never, float(i), content=100 + i)
        policy.on_freed(100 + i, never, float(i))
        policy.on_hit(100 + i, never, i + 5.0)
        policy.on_freed(100 + i, never, i + 5.0)
        policy.on_cached(200 + i, 1, soon, float(i), content=200 + i)
        policy.on_freed(200 + i, soon, float(i))
    expected = fixed["soon"].table(config.density_horizon_s)
    assert policy.density("soon", 3.0) == expected[bucket(3.0)] > 0.0
    assert policy.density("never", 3.0) == 0.0
    victims = policy.evict(40, 50.0)
    assert set(victims) == {100 + i for i in range(40)}  # every "never" block before any "soon" one
    policy.check_integrity()
    assert policy.density("unknown", 1.0) is None


def test_reuse_gaps_and_knapsack(trace: Trace) -> None:
    gaps = sorted(reuse_gaps(trace))
    # block 0 (hash 1, shared by all) left out; A's block 2 at 10 s and 120 s, A's blocks 5, 6 at 120 s,
    # B's block 7 at 95 s
    assert gaps == [10.0, 95.0, 120.0, 120.0, 120.0]
    assert len(reuse_gaps(trace, skip_first_block=False)) == len(gaps) + 5
    assert knapsack_fit([1.0, 2.0, 3.0, 10.0], capacity_blocks=1, duration_s=6.0) == (3, 3.0)
    assert knapsack_fit([10.0], capacity_blocks=1, duration_s=6.0) == (0, 0.0)


def test_idle_age_probe_records_ages_and_changes_nothing(trace: Trace) -> None:
    probe = IdleAgeProbe(create_policy("lru", 3, 512))
    probed = replay(trace, probe)
    plain = replay(trace, create_policy("lru", 3, 512))
    assert (
        probed.policy == "lru" and probed.to_json()["token_hit_ratio"] == plain.to_json()["token_hit_ratio"]
    )
    assert probed.evictions == plain.evictions == len(probe.ages) > 0
    assert all(a >= 0.0 for a in probe.ages)
    probe.check_integrity()
    lone = IdleAgeProbe(create_policy("lru", 4, 16))
    meta = RequestMeta()
    lone.on_cached(1, 0, meta, 0.0)
    lone.on_freed(1, meta, 1.0)
    assert lone.evict(1, 5.0) == [1] and lone.ages == [4.0]
