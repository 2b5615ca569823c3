"""Table, ratios against the strongest baseline of the same run, JSON and the accuracy-vs-escalation plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.evaluation.routing import RunSummary

COLUMNS = (
    ("label", "{:<34}"), ("accuracy", "{:>5.2f}"), ("escalation_rate", "{:>6.3f}"), ("cloud_tokens", "{:>6d}"),
    ("unverified", "{:>5d}"), ("requests", "{:>5d}"), ("round_trips_per_answer", "{:>7.1f}"),
    ("bytes_per_answer", "{:>9.0f}"), ("prompt_tokens_per_request", "{:>8.1f}"),
    ("computed_tokens_per_request", "{:>8.1f}"), ("token_time_p50_ms", "{:>7.0f}"), ("token_time_p95_ms", "{:>7.0f}"),
)  # fmt: skip
HEADER = "config                              acc    esc   cloud unver  reqs  RT/ans  bytes/ans  prompt/r  compt/r  p50 ms  p95 ms"


def table(summaries: list[RunSummary]) -> str:
    rows = [HEADER]
    for s in summaries:
        rows.append(" ".join(fmt.format(getattr(s, key)) for key, fmt in COLUMNS))
    return "\n".join(rows)


def _by_label(summaries: list[RunSummary]) -> dict[str, RunSummary]:
    return {s.label: s for s in summaries}


def ratios(summaries: list[RunSummary]) -> dict[str, Any]:
    """Each gate at a rate vs random at that rate (the strongest same-rate baseline) and vs cloud-only;
    stateful vs the measured stateless re-prefill; speculative vs per-token cloud-only."""
    by = _by_label(summaries)
    out: dict[str, Any] = {}
    cloud = by.get("cloud-only")
    for s in summaries:
        if s.link != "stateful" or s.target_rate is None or s.label.startswith("delay") or s.gate == "random":
            continue
        rnd = by.get(f"random@{s.target_rate:g}")
        out[s.label] = {
            "accuracy_minus_random_same_rate": None if rnd is None else s.accuracy - rnd.accuracy,
            "accuracy_over_cloud_only": None
            if not cloud or not cloud.accuracy
            else s.accuracy / cloud.accuracy,
        }
    for s in summaries:
        if s.link == "stateless":
            twin = by.get(s.label.removeprefix("stateless "))
            if twin is not None and twin.requests and s.requests:
                out[s.label] = {
                    "stateless_over_stateful_prompt_tokens_per_request": s.prompt_tokens_per_request
                    / max(twin.prompt_tokens_per_request, 1e-9),
                    "stateless_over_stateful_computed_tokens_per_request": s.computed_tokens_per_request
                    / max(twin.computed_tokens_per_request, 1e-9),
                    "stateless_over_stateful_bytes_per_answer": s.bytes_per_answer
                    / max(twin.bytes_per_answer, 1e-9),
                }
        if s.strategy == "speculative" and cloud is not None and cloud.requests and s.items == cloud.items:
            out[s.label] = {  # cloud-only asks for up to 64 tokens per request: compare round trips with care
                "round_trips_over_cloud_only": s.round_trips_per_answer / cloud.round_trips_per_answer,
                "p50_token_time_over_cloud_only": s.token_time_p50_ms / cloud.token_time_p50_ms,
                "same_answers_as_cloud_only": s.per_item_correct == cloud.per_item_correct,
            }
    return out


def plot(summaries: list[RunSummary], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    main = [s for s in summaries if s.link != "stateless" and not s.delay_ms and s.strategy == "escalate"]
    gates = sorted({s.gate for s in main if s.target_rate is not None})
    for g in gates:
        pts = sorted(
            (s.escalation_rate, s.accuracy) for s in main if s.gate == g and s.target_rate is not None
        )
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            label=g,
            linestyle="--" if g == "random" else "-",
        )
    by = _by_label(summaries)
    for label, marker in (("small-only", "s"), ("cloud-only", "^")):
        if label in by:
            ax.scatter([by[label].escalation_rate], [by[label].accuracy],
                       marker=marker, s=80, label=label, zorder=3)  # fmt: skip
    ax.set_xlabel("fraction of tokens escalated (measured)")
    ax.set_ylabel("exact-match accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(
    doc: dict[str, Any], summaries: list[RunSummary], out_json: Path, out_png: Path, title: str
) -> None:
    doc["ratios"] = ratios(summaries)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(doc, indent=1))
    plot(summaries, title, out_png)


def rerender(json_path: Path, png_path: Path) -> dict[str, Any]:
    """Recompute ratios and the plot from a results JSON (e.g. after a fix in the derived numbers)."""
    doc = json.loads(json_path.read_text())
    summaries = [RunSummary(**run) for run in doc["runs"]]
    title = f"{doc['pair']['name']}: {doc.get('items', '?')} items of {', '.join(doc['config']['tasks'])}"
    write(doc, summaries, json_path, png_path, title)
    return doc
