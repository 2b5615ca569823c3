"""Prometheus view of the policy counters that EngineCore writes as ``prefix_cache.stats`` markers.

The policy lives in the EngineCore process; the vLLM adapter rewrites its counters to
``$XEDGE_STATUS_DIR/prefix_cache.stats.<pid>.json`` every second (docs/DEVELOPING.md markers). The API
side registers ``collect(status_dir)`` on the registry it serves, next to vLLM's
``vllm:prefix_cache_hits`` / ``vllm:prefix_cache_queries``::

    from prometheus_client import REGISTRY
    REGISTRY.register(collect(status_dir))

Token counts per category are the request-level hits vLLM recorded at admission (the same numbers
behind ``vllm:prefix_cache_hits``, split by our request category). Several engine processes (data
parallel) are summed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.launch.plugin_status import read_markers

_BLOCK_COUNTERS = (
    ("evictions", "Cached blocks the policy evicted"),
    ("pinned_evictions", "Evictions of pinned blocks (no unpinned candidate was left)"),
    ("block_hits", "Cached blocks reused by a request"),
    ("blocks_inserted", "Blocks that became reusable cache entries"),
    ("pins_refused", "Pin requests refused by the pin budget"),
    ("invalid_meta", "Requests whose xedge metadata was malformed (defaults used)"),
)


class PrefixCacheCollector(Collector):
    """Reads the stats markers of ``status_dir`` on every scrape."""

    def __init__(self, status_dir: Path) -> None:
        self.status_dir = Path(status_dir)

    def snapshots(self) -> list[dict]:
        return [
            m.detail
            for m in read_markers(self.status_dir)
            if m.plugin == "prefix_cache" and m.event == "stats"
        ]

    def collect(self) -> Iterator[Metric]:
        snaps = self.snapshots()
        for key, doc in _BLOCK_COUNTERS:
            family = CounterMetricFamily(f"xedge_prefix_cache_{key}", doc, labels=["policy"])
            for policy, value in _sum_by_policy(snaps, key).items():
                family.add_metric([policy], value)
            yield family
        candidates = GaugeMetricFamily(
            "xedge_prefix_cache_candidate_blocks",
            "Free cached blocks the policy may evict",
            labels=["policy"],
        )
        for policy, value in _sum_by_policy(snaps, "candidates").items():
            candidates.add_metric([policy], value)
        yield candidates
        queries = CounterMetricFamily(
            "xedge_prefix_cache_queries",
            "Prompt tokens looked up, per request category",
            labels=["policy", "category"],
        )
        hits = CounterMetricFamily(
            "xedge_prefix_cache_hits",
            "Prompt tokens found cached, per request category",
            labels=["policy", "category"],
        )
        ratio = GaugeMetricFamily(
            "xedge_prefix_cache_hit_ratio",
            "hits / queries per request category",
            labels=["policy", "category"],
        )
        per_category: dict[tuple[str, str], list[int]] = {}
        for snap in snaps:
            for category, c in snap.get("categories", {}).items():
                acc = per_category.setdefault((str(snap.get("policy")), category), [0, 0])
                acc[0] += int(c.get("query_tokens", 0))
                acc[1] += int(c.get("hit_tokens", 0))
        for labels, (q, h) in sorted(per_category.items()):
            queries.add_metric(list(labels), q)
            hits.add_metric(list(labels), h)
            ratio.add_metric(list(labels), h / q if q else 0.0)
        yield queries
        yield hits
        yield ratio


def collect(status_dir: Path) -> PrefixCacheCollector:
    """A Prometheus collector over the prefix-cache stats markers in ``status_dir``."""
    return PrefixCacheCollector(status_dir)


def _sum_by_policy(snaps: list[dict], key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for snap in snaps:
        policy = str(snap.get("policy"))
        out[policy] = out.get(policy, 0) + float(snap.get(key, 0))
    return out
