"""The router's /metrics view of the prefix-cache policy counters, read from the engines' status markers."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from router.prefix_cache_metrics import PrefixCacheCollector
from server.engine.prefix_cache.stats import PolicyStats


def _write_stats(status_dir: Path, pid: int, stats: PolicyStats, candidates: int) -> None:
    status_dir.mkdir(parents=True, exist_ok=True)
    detail = {**stats.snapshot(), "candidates": candidates}
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
