"""Session-aware eviction in the simulator (issue 15, must-have 3): edge sessions open, escalate and end
(DELETE announced on the next request, or abandoned to the TTL) at 1,000 and 10,000 sessions, and K
sessions escalating in rotation; lru vs guarded vs session vs belady at 2x and 4x over-subscription.

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache_sessions_sim.py

Over-subscription = the time-averaged sum of live sessions' contexts (a session is live from its first
request until its DELETE, or its last request + TTL) / the cache. Per policy: token hit ratio, prompt
tokens computed per escalation (mean, p50, p99; an escalation is every request after a session's first)
against the target 2 x (new tokens + one block), and the seconds the replay took. Writes
bench/results/prefix_cache/prefix_cache_sessions_sim.json and prints a table.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

from server.engine.prefix_cache.registry import create_policy
from server.research.cache_sim.belady import BeladyPolicy
from server.research.cache_sim.generators import BLOCK_TOKENS, edge_rotation, edge_sessions
from server.research.cache_sim.replay import replay
from server.research.cache_sim.trace import Trace

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
POLICIES = ("lru", "guarded", "session", "session-due", "belady")
TARGET_TOKENS = 2 * (BLOCK_TOKENS + BLOCK_TOKENS)  # 2 x (one new block of tokens + one block)
TTL_S = 120.0


def live_blocks(trace: Trace) -> float:
    """Time-averaged sum of the live sessions' context sizes (blocks)."""
    size: dict[str, int] = {}
    end: dict[str, float] = {}
    for t, keys, meta in zip(trace.times_s, trace.blocks, trace.metas, strict=True):
        for key in meta.closed_sessions:
            end[key] = min(end.get(key, t), t)
        size[meta.session] = len(keys)
        end[meta.session] = t + (meta.session_ttl_s or 0.0)
    first: dict[str, float] = {}
    for t, meta in zip(trace.times_s, trace.metas, strict=True):
        first.setdefault(meta.session, t)
    span = max(end.values()) - trace.times_s[0]
    return sum(size[s] * (end[s] - first[s]) for s in size) / span


def escalation_costs(trace: Trace, hits: list[int]) -> list[int]:
    seen: set[str] = set()
    out = []
    for n_in, hit, meta in zip(trace.input_tokens, hits, trace.metas, strict=True):
        if meta.session in seen:
            out.append(n_in - hit)
        seen.add(meta.session)
    return out


def run(name: str, trace: Trace) -> dict:
    live = live_blocks(trace)
    rows = []
    for over in (2, 4):
        capacity = max(1, int(live / over))
        for policy in POLICIES:
            t0 = time.perf_counter()
            pol = (
                BeladyPolicy(capacity, trace.block_tokens)
                if policy == "belady"
                else create_policy(policy, capacity, trace.block_tokens)
            )
            result = replay(trace, pol, record=True)
            seconds = time.perf_counter() - t0
            costs = sorted(escalation_costs(trace, result.request_hit_tokens or []))
            row = {
                "workload": name,
                "oversubscription": over,
                "capacity_blocks": capacity,
                "policy": policy,
                "token_hit_ratio": round(result.token_hit_ratio, 4),
                "computed_per_escalation_mean": round(statistics.fmean(costs), 1),
                "computed_per_escalation_p50": costs[len(costs) // 2],
                "computed_per_escalation_p99": costs[min(len(costs) - 1, int(0.99 * len(costs)))],
                "escalations": len(costs),
                "meets_target_mean": statistics.fmean(costs) <= TARGET_TOKENS,
                "seconds": round(seconds, 1),
            }
            rows.append(row)
            print(
                f"{name:<22} {over}x {capacity:>7} {policy:<8} hit {row['token_hit_ratio']:.4f}  computed/esc "
                f"mean {row['computed_per_escalation_mean']:>7.1f} p50 {row['computed_per_escalation_p50']:>5} "
                f"p99 {row['computed_per_escalation_p99']:>5}  {seconds:6.1f} s",
                flush=True,
            )
    return {"workload": name, "requests": len(trace), "live_blocks": round(live, 1), "rows": rows}


def main() -> int:
    start = time.perf_counter()
    workloads = {
        "sessions-1000": edge_sessions(0, num_sessions=1000, ttl_s=TTL_S),
        "sessions-10000": edge_sessions(0, num_sessions=10000, open_rate_per_s=10.0, ttl_s=TTL_S),
        "rotation-20": edge_rotation(0, num_sessions=20, rounds=10),
    }
    print(
        f"target: <= {TARGET_TOKENS} prompt tokens computed per escalation (2 x (new {BLOCK_TOKENS} + one block))"
    )
    results = [run(name, trace) for name, trace in workloads.items()]
    seconds = time.perf_counter() - start
    payload = {
        "command": "flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache_sessions_sim.py",
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "block_tokens": BLOCK_TOKENS,
        "target_tokens_per_escalation": TARGET_TOKENS,
        "workloads": results,
        "notes": "notes.md",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_cache_sessions_sim.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{seconds:.1f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
