"""Hit ratio vs capacity, one line per policy, the infinite cache as a horizontal line."""

from __future__ import annotations

from pathlib import Path

from server.research.cache_sim.grid import GridResult


def plot_grid(grid: GridResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = grid.capacities_tokens
    xs = [c / 1e6 for c in caps]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy in grid.policies:
        ys = [grid.get(policy, c).token_hit_ratio for c in caps]
        style = "--" if policy == "belady" else "-"
        ax.plot(xs, ys, style, marker="o", label=policy)
    ax.axhline(grid.infinite.token_hit_ratio, color="grey", linestyle=":", label="infinite")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}M" for x in xs])
    ax.set_xlabel("cache capacity (tokens)")
    ax.set_ylabel("token hit ratio")
    ax.set_title(f"prefix cache hit ratio vs capacity: {grid.trace_name} ({grid.num_requests} requests)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
