"""Prometheus view of the prefix-cache policy's counters, read from the vLLM replicas' status markers.

The prefix-cache plugin in each replica's EngineCore rewrites ``prefix_cache.stats.<pid>.json`` in
``$XEDGE_STATUS_DIR`` about once a second (docs/DEVELOPING.md, "Plugin status markers"). The router is
given the status directory (``XEDGE_ROUTER_STATUS_DIR``; one sub-directory per replica in compose, the
directory itself for a single local replica) and turns every marker into metrics at scrape time,
labelled by replica (the first sub-directory level, ``.`` for the top level), engine pid and policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from client_edge.protocol.status_marker import read_markers

_COUNTERS = {
    "evictions": "Cached blocks evicted by the policy",
    "pinned_evictions": "Evictions of blocks the policy had pinned",
    "block_hits": "Prefix-cache block hits",
    "pins_refused": "Pin requests the policy refused",
    "invalid_meta": "Requests whose xedge metadata was invalid",
}
_GAUGES = {
    "blocks_cached": "Blocks currently holding a cached prefix",
    "candidates": "Free cached blocks the policy may evict",
    "num_blocks": "KV-cache blocks of the replica",
}
_CATEGORY = {
    "requests": "Requests by workload category",
    "query_tokens": "Prompt tokens looked up in the prefix cache, by category",
    "hit_tokens": "Prompt tokens served from the prefix cache, by category",
}
_PREFIX = "xedge_prefix_cache_"


def read_stats(status_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(replica, pid, detail)`` of every readable ``prefix_cache.stats.*.json`` under ``status_dir``."""
    found = []
    for m in read_markers(status_dir, "prefix_cache.stats.*.json", recursive=True):
        parts = m.path.parent.relative_to(status_dir).parts
        replica = parts[0] if parts else "."  # compose: <status_dir>/<service>/status/
        found.append((replica, str(m.pid), m.detail))
    return found


class PrefixCacheCollector(Collector):
    def __init__(self, status_dir: Path) -> None:
        self.status_dir = status_dir

    def collect(self) -> Iterator[Metric]:
        stats = read_stats(self.status_dir)
        labels = ["replica", "pid", "policy"]
        families: list[Metric] = []
        for family, table in ((CounterMetricFamily, _COUNTERS), (GaugeMetricFamily, _GAUGES)):
            for name, doc in table.items():
                fam = family(_PREFIX + name, doc, labels=labels)
                for replica, pid, d in stats:
                    if name in d:
                        fam.add_metric([replica, pid, str(d.get("policy", ""))], float(d[name]))
                families.append(fam)
        for name, doc in _CATEGORY.items():
            fam = CounterMetricFamily(_PREFIX + "category_" + name, doc, labels=[*labels, "category"])
            for replica, pid, d in stats:
                for category, c in (d.get("categories") or {}).items():
                    if isinstance(c, dict) and name in c:
                        fam.add_metric([replica, pid, str(d.get("policy", "")), category], float(c[name]))
            families.append(fam)
        yield from families
