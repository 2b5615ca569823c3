"""The router's /metrics view of the prefix-cache policy counters, read from the engines' status markers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from router.prefix_cache_metrics import PrefixCacheCollector
from server.engine.prefix_cache.stats import PolicyStats


def _write_stats(
    status_dir: Path, pid: int, stats: PolicyStats, candidates: int, own: dict[str, Any] | None = None
) -> None:
    status_dir.mkdir(parents=True, exist_ok=True)
    detail = {**stats.snapshot(), "candidates": candidates}
    if own is not None:
        detail["policy_stats"] = own
    payload = {"plugin": "prefix_cache", "event": "stats", "pid": pid, "ppid": 1, "detail": detail}
    (status_dir / f"prefix_cache.stats.{pid}.json").write_text(json.dumps(payload))


def _scrape(status_dir: Path) -> str:
    registry = CollectorRegistry()
    registry.register(PrefixCacheCollector(status_dir))
    return generate_latest(registry).decode()


def test_collector_exposes_policy_and_category_counters_per_replica(tmp_path: Path) -> None:
    stats = PolicyStats(policy="workload", evictions=7, block_hits=30)
    stats.record_request("chat", query_tokens=1000, hit_tokens=250)
    stats.record_request("api", query_tokens=400, hit_tokens=0)
    _write_stats(tmp_path / "cloud-a" / "status", 11, stats, candidates=5)
    other = PolicyStats(policy="workload", evictions=3)
    other.record_request("chat", query_tokens=1000, hit_tokens=750)
    _write_stats(tmp_path / "cloud-b" / "status", 12, other, candidates=2)
    (tmp_path / "cloud-a" / "status" / "attention.impl.11.json").write_text(
        json.dumps({"plugin": "attention", "event": "impl", "pid": 11, "detail": {}})
    )

    text = _scrape(tmp_path)
    assert 'xedge_prefix_cache_evictions_total{pid="11",policy="workload",replica="cloud-a"} 7.0' in text
    assert 'xedge_prefix_cache_evictions_total{pid="12",policy="workload",replica="cloud-b"} 3.0' in text
    assert 'xedge_prefix_cache_block_hits_total{pid="11",policy="workload",replica="cloud-a"} 30.0' in text
    assert 'xedge_prefix_cache_candidates{pid="11",policy="workload",replica="cloud-a"} 5.0' in text
    assert 'category="chat",pid="12",policy="workload",replica="cloud-b"} 750.0' in text
    assert "attention" not in text  # other markers are not prefix-cache stats


def test_collector_without_markers_exposes_nothing(tmp_path: Path) -> None:
    assert "xedge_prefix_cache_evictions_total{" not in _scrape(tmp_path)


def test_collector_exposes_the_policies_own_figures(tmp_path: Path) -> None:
    """guarded's leader / switches / loss budget and session's evictions per step, from ``policy_stats``
    (``EvictionPolicy.own_stats``); undocumented keys and values that are not numbers are left out."""
    guarded = {
        "guard_leader": "density",
        "guard_switches": 3,
        "guard_shadow_hits": {"lru": 10, "density": 14, "s3fifo": "x"},
        "guard_loss_budget_used": 0.25,
        "guard_margin": True,  # not a number: skipped
        "made_up_key": 5,
    }
    _write_stats(tmp_path / "cloud-a" / "status", 11, PolicyStats(policy="guarded"), 0, guarded)
    session = {"session_evictions": {"closed": 7, "protected": 1}, "session_protected": 2, "session_idled": 1}
    _write_stats(tmp_path / "cloud-b" / "status", 12, PolicyStats(policy="session"), 0, session)
    _write_stats(tmp_path / "cloud-c" / "status", 13, PolicyStats(policy="lru"), 0, {"guard_switches": [1]})

    text = _scrape(tmp_path)
    a = 'pid="11",policy="guarded",replica="cloud-a"'
    assert f'xedge_prefix_cache_guard_leader{{expert="density",{a}}} 1.0' in text
    assert f"xedge_prefix_cache_guard_switches_total{{{a}}} 3.0" in text
    assert f'xedge_prefix_cache_guard_shadow_hits_total{{expert="density",{a}}} 14.0' in text
    assert f"xedge_prefix_cache_guard_loss_budget_used{{{a}}} 0.25" in text
    b = 'pid="12",policy="session",replica="cloud-b"'
    assert f'xedge_prefix_cache_session_evictions_total{{kind="closed",{b}}} 7.0' in text
    assert f"xedge_prefix_cache_session_protected{{{b}}} 2.0" in text
    assert f"xedge_prefix_cache_session_idled_total{{{b}}} 1.0" in text
    assert 'expert="s3fifo"' not in text and "guard_margin{" not in text and "made_up_key" not in text
    assert not [line for line in text.splitlines() if "guard_" in line and 'replica="cloud-c"' in line]
