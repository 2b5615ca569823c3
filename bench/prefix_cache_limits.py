"""What limits `density` on the Mooncake conversation trace (issue 4: where the 30 % target is missed).

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache_limits.py [--capacities 1M,2M,3M]

Replays the trace with the committed `density` policy under category variants that carry more than an
online server can know, with `lru` and `belady` from the same run as the reference for the share of the
lru -> belady gap each closes:

- turn, online: the trace reader's categories, i.e. the committed `density` (checked against
  bench/results/prefix_cache/prefix_cache_grid.json);
- turn, and turn x previous gap x output length (40 classes), with in-sample statistics: reuse-gap
  histograms of the whole trace (`hindsight.in_sample_histograms`, `DensityPolicy.use_fixed_histograms`);
- the 40 classes with online statistics;
- oracles (online statistics): whether the conversation continues (alone and crossed with the turn);
  the gap to its next turn (< 60, 60-120, 120-240, 240-480, >= 480 s, never).

It also measures how predictable the next turn is from what a server knows (share of requests whose
conversation continues and median gap to its next turn, by turn, output length, previous gap and prompt
length), the reuse-gap quantiles, lru's idle age at eviction, and the fractional-knapsack bound.
Prints tables; writes bench/results/prefix_cache/prefix_cache_limits.json and .png. Exit 1 when the online row
does not reproduce the committed grid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from pathlib import Path

from server.data_root import data_root
from server.engine.prefix_cache.density import DensityPolicy
from server.engine.prefix_cache.registry import create_policy, policy_class
from server.research.cache_sim.conversations import (
    Conversations,
    bin_label,
    bin_labels,
    continuation_by,
    conversations,
    relabel,
)
from server.research.cache_sim.grid import parse_capacities
from server.research.cache_sim.hindsight import IdleAgeProbe, in_sample_histograms, knapsack_fit, reuse_gaps
from server.research.cache_sim.replay import replay
from server.research.cache_sim.trace import Trace, read_trace, turn_category

TRACE = data_root() / "traces" / "mooncake_conversation_trace.jsonl"  # $XEDGE_DATA_ROOT or ../shared/data
RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
GRID = RESULTS / "prefix_cache_grid.json"  # its "mooncake" trace: the whole-trace grid
TARGET_SHARE = 0.30
PREV_GAP_EDGES = (60.0, 240.0)  # 40 classes: previous gap < 60 s, 60-240 s, >= 240 s
OUTPUT_EDGES = (50.0, 200.0, 400.0)  # ... and output < 50, 50-200, 200-400, >= 400 tokens
NEXT_GAP_EDGES = (60.0, 120.0, 240.0, 480.0)  # oracle: next turn < 60, 60-120, ..., >= 480 s, never


def forty_classes(trace: Trace, conv: Conversations) -> list[str]:
    """turn1 x output (4) + {turn2, turn3, turn4+} x previous gap (3) x output (4) = 40 classes."""
    labels = []
    for turn, prev, out in zip(conv.turns, conv.prev_gap_s, trace.output_tokens, strict=True):
        gap = "" if prev is None else "|prev" + bin_label(prev, PREV_GAP_EDGES, "s")
        labels.append(f"{turn_category(turn)}{gap}|out{bin_label(out, OUTPUT_EDGES)}")
    return labels


def oracle_continues(conv: Conversations) -> list[str]:
    return ["continues" if g is not None else "ends" for g in conv.next_gap_s]


def oracle_next_gap(conv: Conversations) -> list[str]:
    return [
        "next-never" if g is None else "next" + bin_label(g, NEXT_GAP_EDGES, "s") for g in conv.next_gap_s
    ]


def variants(trace: Trace, conv: Conversations) -> list[tuple[str, str, Trace]]:
    """(name, statistics, relabelled trace); statistics: "online" or "in-sample"."""
    forty = relabel(trace, forty_classes(trace, conv))
    continues = oracle_continues(conv)
    continues_x_turn = [f"{m.category}|{c}" for m, c in zip(trace.metas, continues, strict=True)]
    return [
        ("turn", "online", trace),
        ("turn", "in-sample", trace),
        ("turn x prev gap x output (40)", "online", forty),
        ("turn x prev gap x output (40)", "in-sample", forty),
        ("oracle: conversation continues", "online", relabel(trace, continues)),
        ("oracle: continues x turn", "online", relabel(trace, continues_x_turn)),
        ("oracle: gap to next turn (6 bins)", "online", relabel(trace, oracle_next_gap(conv))),
    ]


def run_density(trace: Trace, capacity_blocks: int, stats: str) -> float:
    policy = create_policy("density", capacity_blocks, trace.block_tokens)
    assert isinstance(policy, DensityPolicy)
    if stats == "in-sample":
        policy.use_fixed_histograms(in_sample_histograms(trace))
    result = replay(trace, policy)
    policy.check_integrity()
    return result.token_hit_ratio


def predictiveness(trace: Trace, conv: Conversations) -> dict[str, dict]:
    """Share of requests whose conversation continues, and median gap to the next turn, by feature."""
    turn_order = [str(t) for t in range(1, 10)] + ["10+"]
    out_edges, prev_edges = (10, 50, 100, 200, 400, 800), (30, 60, 120, 240, 480)
    prompt_edges = (1000, 2000, 4000, 8000, 16000, 32000)
    by: dict[str, tuple[list[str], list[str]]] = {
        "turn": ([str(t) if t < 10 else "10+" for t in conv.turns], turn_order),
        "output_tokens": ([bin_label(o, out_edges) for o in trace.output_tokens], bin_labels(out_edges)),
        "previous_gap": (
            ["first turn" if g is None else bin_label(g, prev_edges, "s") for g in conv.prev_gap_s],
            ["first turn", *bin_labels(prev_edges, "s")],
        ),
        "prompt_tokens": ([bin_label(n, prompt_edges) for n in trace.input_tokens], bin_labels(prompt_edges)),
    }
    return {
        name: {k: s.to_json() for k, s in continuation_by(groups, conv, order).items()}
        for name, (groups, order) in by.items()
    }


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(int(q * len(sorted_values)), len(sorted_values) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacities", default="1M,2M,3M", help="token capacities (default 1M,2M,3M)")
    args = parser.parse_args(argv)
    if not TRACE.exists():
        print(f"skip: the Mooncake trace is not at {TRACE}", file=sys.stderr)
        return 2
    capacities = parse_capacities(args.capacities)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    trace = read_trace(TRACE)
    conv = conversations(trace)
    bt = trace.block_tokens
    committed = {
        r["policy"] + "@" + str(r["capacity_blocks"]): r
        for r in json.loads(GRID.read_text())["traces"]["mooncake"]["results"]
    }

    rows, lru_idle, reference = [], {}, {}
    for tokens in capacities:
        blocks = tokens // bt
        probe = IdleAgeProbe(create_policy("lru", blocks, bt))
        lru = replay(trace, probe).token_hit_ratio
        belady = replay(trace, policy_class("belady", allow_oracle=True)(blocks, bt)).token_hit_ratio
        lru_idle[tokens] = statistics.median(probe.ages) if probe.ages else None
        reference[tokens] = {"lru": lru, "belady": belady}
        for name, stats, relabelled in variants(trace, conv):
            cpu_start_variant = time.process_time()
            ratio = run_density(relabelled, blocks, stats)
            cpu = time.process_time() - cpu_start_variant
            rows.append(
                {
                    "categories": name,
                    "statistics": stats,
                    "capacity_tokens": tokens,
                    "num_categories": len({m.category for m in relabelled.metas}),
                    "token_hit_ratio": round(ratio, 6),
                    "gap_closed": round((ratio - lru) / (belady - lru), 4),
                    "cpu_s": round(cpu, 1),
                }
            )
            print(
                f"{name:<36} {stats:<9} {tokens / 1e6:g}M  {ratio:.4f}  {rows[-1]['gap_closed']:6.1%}",
                flush=True,
            )

    # the online turn row is the committed density: it must reproduce the committed grid
    checks = []
    for tokens in capacities:
        blocks = tokens // bt
        online = next(r for r in rows if r["capacity_tokens"] == tokens and r["statistics"] == "online")
        for policy, ours in (
            ("lru", reference[tokens]["lru"]),
            ("belady", reference[tokens]["belady"]),
            ("density", online["token_hit_ratio"]),
        ):
            grid = committed.get(f"{policy}@{blocks}")
            same = grid is not None and abs(grid["token_hit_ratio"] - ours) < 5e-7
            checks.append(
                {
                    "policy": policy,
                    "capacity_tokens": tokens,
                    "this_run": round(ours, 6),
                    "committed_grid": None if grid is None else grid["token_hit_ratio"],
                    "same": same,
                }
            )

    gaps = sorted(reuse_gaps(trace))
    duration = trace.times_s[-1] - trace.times_s[0]
    turn_counts = conv.turn_counts()
    facts = {
        "requests": len(trace),
        "conversations": len(turn_counts),
        "single_request_conversations": sum(1 for n in turn_counts.values() if n == 1),
        "distinct_first_blocks": len({keys[0] for keys in trace.blocks if keys}),
        "duration_s": round(duration, 1),
        "reuse_gaps_excluding_block0": {
            "count": len(gaps),
            "share_under_30s": round(sum(1 for g in gaps if g < 30) / len(gaps), 3),
            **{f"q{int(q * 100):02d}_s": round(quantile(gaps, q), 1) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
        },
        "lru_median_idle_age_at_eviction_s": {
            str(c): None if a is None else round(a, 1) for c, a in lru_idle.items()
        },
        "knapsack_bound": {},
    }
    for tokens in capacities:
        fit, longest = knapsack_fit(gaps, tokens // bt - 1, duration)  # block 0 stays resident
        facts["knapsack_bound"][str(tokens)] = {
            "reuses_kept": fit,
            "of": len(gaps),
            "longest_gap_s": round(longest, 1),
        }
    predict = predictiveness(trace, conv)
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start

    print_report(rows, reference, checks, facts, predict, capacities)
    print(f"{len(rows) + 2 * len(capacities)} replays: {wall:.1f} s wall, {cpu:.1f} s CPU")
    payload = {
        "trace": TRACE.name,
        "command": "flock /tmp/xedge-heavy.lock .venv/bin/python bench/prefix_cache_limits.py",
        "target_gap_closed": TARGET_SHARE,
        "bins": {
            "previous_gap_s": PREV_GAP_EDGES,
            "output_tokens": OUTPUT_EDGES,
            "next_gap_s": NEXT_GAP_EDGES,
        },
        "reference": {str(c): {k: round(v, 6) for k, v in r.items()} for c, r in reference.items()},
        "variants": rows,
        "online_turn_matches_committed_grid": checks,
        "trace_facts": facts,
        "predictiveness": predict,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "notes": "prefix_cache_notes.md",
    }
    out = RESULTS / "prefix_cache_limits.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out} and {plot(rows, capacities, RESULTS / 'prefix_cache_limits.png')}")
    return 0 if all(c["same"] for c in checks) else 1


def print_report(rows, reference, checks, facts, predict, capacities) -> None:
    print("\ntoken hit ratio / share of the lru -> belady gap closed (target 30 %)")
    print(f"{'categories':<36} {'statistics':<10}" + "".join(f"{c / 1e6:>16g}M" for c in capacities))
    for ref in ("lru", "belady"):
        cells = "".join(f"{reference[c][ref]:>17.4f}" for c in capacities)
        print(f"{ref:<36} {'-':<10}{cells}")
    for name, stats in dict.fromkeys((r["categories"], r["statistics"]) for r in rows):
        cells = ""
        for c in capacities:
            r = next(
                x
                for x in rows
                if (x["categories"], x["statistics"], x["capacity_tokens"]) == (name, stats, c)
            )
            cells += f"{r['token_hit_ratio']:>9.4f} /{r['gap_closed']:>6.1%}"
        print(f"{name:<36} {stats:<10}{cells}")
    print("\nonline turn row vs bench/results/prefix_cache/prefix_cache_grid.json:")
    for c in checks:
        print(
            f"  {c['policy']:<8} {c['capacity_tokens'] / 1e6:g}M  {c['this_run']:.6f} vs {c['committed_grid']}  same={c['same']}"
        )
    print("\ntrace facts:", json.dumps(facts))
    print("\nshare of requests whose conversation continues / median gap to the next turn (s)")
    for feature, table in predict.items():
        cells = ", ".join(
            f"{k}: {v['continue_share']:.2f}/{v['median_next_gap_s']}" for k, v in table.items()
        )
        print(f"  by {feature}: {cells}")


def plot(rows: list[dict], capacities: tuple[int, ...], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(f"{textwrap.fill(r['categories'], 18)}\n({r['statistics']})" for r in rows))
    width = 0.8 / len(capacities)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for k, c in enumerate(capacities):
        shares = [100 * r["gap_closed"] for r in rows if r["capacity_tokens"] == c]
        ax.bar([i + k * width for i in range(len(names))], shares, width, label=f"{c / 1e6:g}M tokens")
    ax.axhline(100 * TARGET_SHARE, color="red", linestyle="--", label="target 30 %")
    ax.set_xticks([i + width * (len(capacities) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylabel("share of the lru -> belady gap closed (%)")
    ax.set_title("density under category variants, Mooncake conversation trace")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
