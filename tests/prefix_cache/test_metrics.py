from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from server.prefix_cache.metrics import collect
from server.prefix_cache.stats import PolicyStats


def _write_stats(status_dir: Path, pid: int, stats: PolicyStats, candidates: int) -> None:
    detail = {**stats.snapshot(), "candidates": candidates}
    payload = {"plugin": "prefix_cache", "event": "stats", "pid": pid, "ppid": 1, "detail": detail}
    (status_dir / f"prefix_cache.stats.{pid}.json").write_text(json.dumps(payload))


def test_collector_exposes_policy_and_category_counters(tmp_path: Path) -> None:
    stats = PolicyStats(policy="workload", evictions=7, block_hits=30)
    stats.record_request("chat", query_tokens=1000, hit_tokens=250)
    stats.record_request("api", query_tokens=400, hit_tokens=0)
    _write_stats(tmp_path, 11, stats, candidates=5)
    other = PolicyStats(policy="workload", evictions=3)
    other.record_request("chat", query_tokens=1000, hit_tokens=750)
    _write_stats(tmp_path, 12, other, candidates=2)  # a second engine process: summed
    (tmp_path / "attention.impl.11.json").write_text(json.dumps({"plugin": "attention", "event": "impl"}))

    registry = CollectorRegistry()
    registry.register(collect(tmp_path))
    text = generate_latest(registry).decode()
    assert 'xedge_prefix_cache_evictions_total{policy="workload"} 10.0' in text
    assert 'xedge_prefix_cache_block_hits_total{policy="workload"} 30.0' in text
    assert 'xedge_prefix_cache_candidate_blocks{policy="workload"} 7.0' in text
    assert 'xedge_prefix_cache_hits_total{category="chat",policy="workload"} 1000.0' in text
    assert 'xedge_prefix_cache_queries_total{category="chat",policy="workload"} 2000.0' in text
    assert 'xedge_prefix_cache_hit_ratio{category="chat",policy="workload"} 0.5' in text
    assert 'xedge_prefix_cache_hit_ratio{category="api",policy="workload"} 0.0' in text


def test_collector_without_markers_exposes_nothing(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(collect(tmp_path))
    assert "xedge_prefix_cache_evictions_total{" not in generate_latest(registry).decode()
