"""Every eviction policy x trace x capacity, with the share of the lru -> belady gap each closes (issue 15,
must-haves 1 and 5).

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache.py [--requests 5000] [--jobs 2] [--trace NAME=PATH ...]

Traces: the Mooncake conversation trace whole (1M-50M tokens, the grid bench/prefix_cache_limits.py
checks itself against) and split by time (every policy runs the whole trace, only requests of the second
half are scored: fitted on the first half, scored on the second); and the seeded generators of
server/research/cache_sim/generators.py (api, chat, agent, rag, burst, edge-sessions) at 5 %, 15 % and
40 % of each trace's distinct blocks; plus any ``--trace NAME=PATH`` file, whole, at 256K-10M tokens (e.g.
Mooncake's FAST'25 ``traces/synthetic_trace.jsonl``, the held-out trace of issue 15). Prints one table, writes
bench/results/prefix_cache/prefix_cache_grid.json and prefix_cache_grid.png (one panel per trace), and
checks "never below lru": every online policy's token hit ratio against lru - 0.002 at every point
(``guarded`` is the one that must hold it; the verdicts of all are recorded). Exit 1 if guarded misses.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from server.data_root import data_root
from server.research.cache_sim.generators import GENERATORS, edge_sessions, footprint_blocks, generate
from server.research.cache_sim.grid import ALL_POLICIES, GridResult, parse_capacities, run_grid
from server.research.cache_sim.trace import Trace, read_trace

MOONCAKE = data_root() / "traces" / "mooncake_conversation_trace.jsonl"  # $XEDGE_DATA_ROOT or ../shared/data
RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
TOLERANCE = 0.002
SHARES = (0.05, 0.15, 0.40)
EXTRA_CAPACITIES = "256k,512k,1M,2M,3M,5M,10M"  # --trace files: the held-out capacities (1M-3M) and around
SEED = 0
COLORS = {"lru": "tab:blue", "workload": "tab:orange", "workload-paper": "tab:olive", "s3fifo": "tab:green",
          "density": "tab:red", "guarded": "tab:purple", "session": "tab:brown", "session-due": "tab:pink",
          "belady": "black"}  # fmt: skip


def _traces(requests: int, extra: list[str]) -> list[tuple[str, Trace, tuple[int, ...], float | None]]:
    """(name, trace, capacities in tokens, score_from_s) for every trace of the grid; ``extra``: NAME=PATH of
    further trace files (Mooncake or Bailian format), replayed whole at the held-out capacities."""
    out: list[tuple[str, Trace, tuple[int, ...], float | None]] = []
    for spec in extra:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"--trace: expected NAME=PATH of a trace file, got {spec!r}")
        out.append((name, read_trace(Path(path)), parse_capacities(EXTRA_CAPACITIES), None))
    if MOONCAKE.exists():
        trace = read_trace(MOONCAKE)
        out.append(("mooncake", trace, parse_capacities("1M,2M,3M,5M,10M,50M"), None))
        split = trace.times_s[len(trace) // 2]
        out.append(("mooncake-2nd-half", trace, parse_capacities("1M,2M,3M,10M"), split))
    else:
        print(f"warning: the Mooncake trace is not at {MOONCAKE}; generated traces only", file=sys.stderr)
    generated = {name: generate(name, SEED, requests) for name in GENERATORS}
    generated["edge-sessions"] = edge_sessions(SEED, num_sessions=max(1, requests // 9))
    for name, trace in generated.items():
        distinct = footprint_blocks(trace)
        caps = tuple(max(1, int(share * distinct)) * trace.block_tokens for share in SHARES)
        out.append((name, trace, caps, None))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per generated trace")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--trace", action="append", default=[], metavar="NAME=PATH",
                        help="also replay this trace file (repeatable), e.g. Mooncake's FAST'25 synthetic trace")  # fmt: skip
    parser.add_argument("--render-only", action="store_true", help="redraw the PNG from the recorded JSON")
    args = parser.parse_args()
    if args.render_only:
        recorded = json.loads((RESULTS / "prefix_cache_grid.json").read_text())
        print(f"wrote {_plot(recorded['traces'], RESULTS / 'prefix_cache_grid.png')}")
        return 0
    start = time.perf_counter()
    grids: list[GridResult] = []
    for name, trace, caps, score_from in _traces(args.requests, args.trace):
        t0 = time.perf_counter()
        grid = run_grid(trace, name, caps, ALL_POLICIES, jobs=args.jobs, score_from_s=score_from)
        grids.append(grid)
        print(
            f"== {name} ({len(trace)} requests{', scored from the median arrival' if score_from else ''}):"
            f" {time.perf_counter() - t0:.1f} s"
        )
        print(grid.table())
    seconds = time.perf_counter() - start

    online = [p for p in ALL_POLICIES if p not in ("lru", "belady")]
    verdicts = {}
    for p in online:
        misses = [
            {
                "trace": g.trace_name,
                "capacity_tokens": c,
                "policy": round(g.get(p, c).token_hit_ratio, 4),
                "lru": round(g.get("lru", c).token_hit_ratio, 4),
            }
            for g in grids
            for c in g.capacities_tokens
            if g.get(p, c).token_hit_ratio < g.get("lru", c).token_hit_ratio - TOLERANCE
        ]
        verdicts[p] = {"never_below_lru": not misses, "below_lru_at": misses}
    print(f"\nnever below lru - {TOLERANCE} at every capacity of every trace:")
    for p, v in verdicts.items():
        print(
            f"  {p:<15} {'yes' if v['never_below_lru'] else 'NO: ' + str(len(v['below_lru_at'])) + ' points'}"
        )
    payload = {
        "command": "flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache.py"
        + ("" if args.requests == 5000 else f" --requests {args.requests}")
        + "".join(f" --trace {t}" for t in args.trace),
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "seed": SEED,
        "tolerance": TOLERANCE,
        "never_below_lru": verdicts,
        "traces": {g.trace_name: g.to_json() for g in grids},
        "notes": "notes.md",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_cache_grid.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{seconds:.1f} s; wrote {out} and {_plot(payload['traces'], RESULTS / 'prefix_cache_grid.png')}")
    return 0 if verdicts["guarded"]["never_below_lru"] else 1


def _plot(traces: dict[str, dict], path: Path) -> Path:
    """One panel per trace (``traces``: the JSON of each trace's grid), token hit ratio vs capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cols = 4
    rows = -(-len(traces) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.6), squeeze=False)
    for ax, (name, grid) in zip(axes.flat, traces.items(), strict=False):
        ratio = {(r["policy"], r["capacity_blocks"]): r["token_hit_ratio"] for r in grid["results"]}
        xs = [c // grid["block_tokens"] for c in grid["capacities_tokens"]]
        for policy in grid["policies"]:
            style = {"belady": ":", "lru": "--"}.get(policy, "-")
            width = 2.5 if policy in ("guarded", "session") else 1.2
            ax.plot(xs, [ratio[(policy, x)] for x in xs], style, color=COLORS.get(policy), marker="o", markersize=3,
                    linewidth=width, label=policy, zorder=3 if policy == "lru" else 2)  # fmt: skip
        ax.axhline(grid["infinite"]["token_hit_ratio"], color="grey", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs], fontsize=7)
        ax.set_title(f"{name} ({grid['block_tokens']}-token blocks)", fontsize=10)
        ax.set_xlabel("capacity (blocks)", fontsize=8)
        ax.set_ylabel("token hit ratio", fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(traces) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle("prefix-cache token hit ratio per policy, trace and capacity (grey dotted: infinite cache; "
                 "session = lru where requests carry no session)")  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
