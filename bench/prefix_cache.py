"""Prefix-cache eviction policies on the real Mooncake conversation trace (issue 4, items 3-4).

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache.py

Replays the 12,031-request trace for every policy (lru = vLLM's order, workload, workload-paper, s3fifo,
density, belady = the offline optimum) at 1M, 2M, 3M, 5M, 10M and 50M tokens plus the infinite cache;
prints the table and writes bench/results/prefix_cache/prefix_cache_mooncake.json and .png. Each result states the share of the
lru -> belady gap every policy closes, and whether the targets hold: the best online policy never
below lru, and >= 30 % of the gap closed at 1M-3M.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from server.data_root import data_root
from server.research.cache_sim.grid import ALL_POLICIES, parse_capacities, run_grid
from server.research.cache_sim.plot import plot_grid
from server.research.cache_sim.trace import read_trace

TRACE = data_root() / "traces" / "mooncake_conversation_trace.jsonl"  # $XEDGE_DATA_ROOT or ../shared/data
RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
CAPACITIES = parse_capacities("1M,2M,3M,5M,10M,50M")
TARGET_SHARE = 0.30
TARGET_CAPACITIES = (1_000_000, 2_000_000, 3_000_000)


def main() -> int:
    if not TRACE.exists():
        print(f"skip: the Mooncake trace is not at {TRACE}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    trace = read_trace(TRACE)
    grid = run_grid(trace, TRACE.name, CAPACITIES, ALL_POLICIES, jobs=2)
    seconds = time.perf_counter() - start
    print(grid.table())
    print(
        f"{len(trace)} requests, {len(ALL_POLICIES)} policies x {len(CAPACITIES)} capacities: {seconds:.1f} s"
    )

    online = [p for p in ALL_POLICIES if p not in ("lru", "belady")]
    verdicts = {}
    for p in online:
        never_below = all(
            grid.get(p, c).token_hit_ratio >= grid.get("lru", c).token_hit_ratio for c in CAPACITIES
        )
        shares = {c: grid.gap_closed(p, c) for c in TARGET_CAPACITIES}
        verdicts[p] = {
            "never_below_lru": never_below,
            "min_gap_closed_1M_3M": round(min(s for s in shares.values() if s is not None), 4),
            "meets_30pct_at_1M_3M": all(s is not None and s >= TARGET_SHARE for s in shares.values()),
        }
    best = max(online, key=lambda p: sum(grid.get(p, c).token_hit_ratio for c in CAPACITIES))
    payload = {
        **grid.to_json(),
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "command": "flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache.py",
        "best_online_policy": best,
        "targets": verdicts,
        "notes": "notes.md",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_cache_mooncake.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"best online policy: {best}; targets: {json.dumps(verdicts)}")
    print(f"wrote {out} and {plot_grid(grid, RESULTS / 'prefix_cache_mooncake.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
