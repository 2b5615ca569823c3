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
# The policies' own figures (``EvictionPolicy.own_stats``, under ``policy_stats`` in the marker): key ->
# (kind, help, the label of a per-name mapping or None). Keys not listed here are not exported, so the
# engine cannot grow the router's series with names of its choosing.
_OWN: dict[str, tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str | None]] = {
    "guard_switches": (CounterMetricFamily, "Times guarded's leading expert changed", None),
    "guard_accesses": (CounterMetricFamily, "Block accesses guarded's shadow caches scored", None),
    "guard_shadow_hits": (CounterMetricFamily, "Block hits of guarded's shadow cache, per expert", "expert"),
    "guard_scores": (
        GaugeMetricFamily,
        "guarded's decayed hit score over the lru shadow, per learned expert",
        "expert",
    ),
    "guard_margin": (GaugeMetricFamily, "Score lead guarded's learned expert needs to take the lead", None),
    "guard_pool_minus_lru_hits": (
        GaugeMetricFamily,
        "guarded pool's block hits minus its lru shadow's",
        None,
    ),
    "guard_loss_budget_used": (
        GaugeMetricFamily,
        "Share of guarded's loss budget (guard_slack x accesses) used; >= 1 hands the pool back to lru",
        None,
    ),
    "session_live": (GaugeMetricFamily, "Edge sessions the session policy holds as live", None),
    "session_protected": (GaugeMetricFamily, "Live edge sessions whose blocks are protected", None),
    "session_protected_blocks": (GaugeMetricFamily, "Blocks of protected edge sessions", None),
    "session_budget_blocks": (GaugeMetricFamily, "Blocks protected edge sessions may hold", None),
    "session_mean_gap_s": (GaugeMetricFamily, "Mean gap between an edge session's requests, seconds", None),
    "session_closed": (CounterMetricFamily, "Edge sessions closed (DELETE announced or final request)", None),
    "session_expired": (CounterMetricFamily, "Edge sessions ended by their TTL", None),
    "session_idled": (CounterMetricFamily, "Protected edge sessions that lost protection by idling", None),
    "session_evictions": (
        CounterMetricFamily,
        "Blocks evicted by the session policy, per step of its order (closed, over_budget, stale, "
        "unprotected, protected)",
        "kind",
    ),
}
_LEADER = "guard_leader"
_MAX_NAMES = 16  # per mapping (experts, eviction steps: a handful)
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
        families += _own_families(stats, labels)
        yield from families


def _own_families(stats: list[tuple[str, str, dict[str, Any]]], labels: list[str]) -> list[Metric]:
    """The documented ``policy_stats`` keys of every marker; values that are not numbers are skipped."""
    families: list[Metric] = []
    for key, (family, doc, label) in _OWN.items():
        fam = family(_PREFIX + key, doc, labels=labels if label is None else [*labels, label])
        for replica, pid, d in stats:
            value, base = _own(d).get(key), [replica, pid, str(d.get("policy", ""))]
            if label is None and _is_number(value):
                fam.add_metric(base, float(value))
            elif label is not None and isinstance(value, dict):
                for name, v in list(value.items())[:_MAX_NAMES]:
                    if _is_number(v):
                        fam.add_metric([*base, str(name)], float(v))
        families.append(fam)
    leader = GaugeMetricFamily(
        _PREFIX + _LEADER,
        "The expert that evicts in guarded's pool (1 for the leader)",
        labels=[*labels, "expert"],
    )
    for replica, pid, d in stats:
        name = _own(d).get(_LEADER)
        if isinstance(name, str):
            leader.add_metric([replica, pid, str(d.get("policy", "")), name], 1.0)
    families.append(leader)
    return families


def _own(detail: dict[str, Any]) -> dict[str, Any]:
    own = detail.get("policy_stats")
    return own if isinstance(own, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
