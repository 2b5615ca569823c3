"""Table, ratios against the strongest baseline of the same run, JSON and the accuracy-vs-escalation plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from server.research.routing_eval.routing import RunSummary, add_agreement

COLUMNS = (
    ("label", "{:<34}"), ("items", "{:>4d}"), ("accuracy", "{:>5.2f}"), ("accuracy_ci95", "{0[0]:>4.2f}-{0[1]:<4.2f}"),
    ("agreement_with_cloud", "{:>5.2f}"), ("text_prefix_agreement", "{:>5.2f}"), ("escalation_rate", "{:>6.3f}"), ("cloud_tokens", "{:>6d}"),
    ("unverified", "{:>5d}"), ("requests", "{:>5d}"), ("round_trips_per_answer", "{:>7.1f}"),
    ("bytes_per_answer", "{:>9.0f}"), ("prompt_tokens_per_request", "{:>8.1f}"),
    ("computed_tokens_per_request", "{:>8.1f}"), ("token_time_p50_ms", "{:>7.0f}"), ("token_time_p95_ms", "{:>7.0f}"),
)  # fmt: skip
HEADER = "config                                n   acc  acc 95% CI  agree  txtpf    esc   cloud unver  reqs  RT/ans  bytes/ans  prompt/r  compt/r  p50 ms  p95 ms"


def _cell(fmt: str, value: object) -> str:
    if value is None:
        return "{:>5}".format("-")
    return fmt.format(value)


def table(summaries: list[RunSummary]) -> str:
    """One row per configuration: items, accuracy with its Wilson 95 % interval, agreement with cloud-only."""
    add_agreement(summaries)
    rows = [HEADER]
    for s in summaries:
        rows.append(" ".join(_cell(fmt, getattr(s, key)) for key, fmt in COLUMNS))
    return "\n".join(rows)


def _by_label(summaries: list[RunSummary]) -> dict[str, RunSummary]:
    return {s.label: s for s in summaries}


def ratios(summaries: list[RunSummary]) -> dict[str, Any]:
    """Cloud-only vs small-only; each gate at a rate vs random at that rate (the strongest same-rate baseline)
    and vs cloud-only;
    stateful vs the measured stateless re-prefill; speculative vs per-token cloud-only."""
    by = _by_label(summaries)
    out: dict[str, Any] = {}
    cloud = by.get("cloud-only")
    small = by.get("small-only")
    if cloud is not None and small is not None:
        out["cloud-only vs small-only"] = {
            "accuracy_difference": cloud.accuracy - small.accuracy,
            # disjoint Wilson intervals: the difference is not an accident of the item sample
            "intervals_disjoint": cloud.accuracy_ci95[0] > small.accuracy_ci95[1]
            or small.accuracy_ci95[0] > cloud.accuracy_ci95[1],
        }
    for s in summaries:
        if s.link != "stateful" or s.target_rate is None or s.label.startswith("delay") or s.gate == "random":
            continue
        rnd = by.get(f"random@{s.target_rate:g}")
        out[s.label] = {
            "accuracy_minus_random_same_rate": None if rnd is None else s.accuracy - rnd.accuracy,
            "agreement_minus_random_same_rate": None
            if rnd is None or s.agreement_with_cloud is None or rnd.agreement_with_cloud is None
            else s.agreement_with_cloud - rnd.agreement_with_cloud,
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


def _plot_row(axes: Any, summaries: list[RunSummary], task: str) -> None:
    """Three panels over the measured escalation rate: accuracy and agreement with cloud-only (each with
    its Wilson 95 % interval as error bars), and the mean share of cloud-only's text reproduced."""
    add_agreement(summaries)
    main = [
        s
        for s in summaries
        if s.link != "stateless" and not s.label.startswith("delay") and s.strategy == "escalate"
    ]
    gates = sorted({s.gate for s in main if s.target_rate is not None})
    by = _by_label(summaries)
    items = max((s.items for s in summaries), default=0)
    panels = (("accuracy", "accuracy_ci95", "exact-match accuracy"),
              ("agreement_with_cloud", "agreement_ci95", "same answer as cloud-only"),
              ("text_prefix_agreement", None, "share of cloud-only's text reproduced\n(from the start; mean)"))  # fmt: skip
    for ax, (key, ci_key, ylabel) in zip(axes, panels, strict=True):

        def point(
            s: RunSummary, key: str = key, ci_key: str | None = ci_key
        ) -> tuple[float, float, float, float]:
            v = getattr(s, key)
            lo, hi = getattr(s, ci_key) if ci_key else (v, v)  # a mean of shares: no binomial interval
            return s.escalation_rate, v, v - lo, hi - v

        for g in gates:
            pts = sorted(
                point(s)
                for s in main
                if s.gate == g and s.target_rate is not None and getattr(s, key) is not None
            )
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                            marker="o", capsize=3, label=g, linestyle="--" if g == "random" else "-")  # fmt: skip
        for label, marker in (("small-only", "s"), ("cloud-only", "^")):
            if label in by and getattr(by[label], key) is not None:
                x, y, dlo, dhi = point(by[label])
                ax.errorbar([x], [y], yerr=[[dlo], [dhi]], marker=marker, markersize=9, capsize=3, linestyle="none",
                            label=label, zorder=3)  # fmt: skip
        ax.set_title(f"{task} ({items} items)", fontsize=9)
        ax.set_xlabel("fraction of tokens escalated (measured)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def plot(per_task: dict[str, list[RunSummary]], title: str, path: Path) -> None:
    """One row of three panels (accuracy, answer and text agreement with cloud-only) per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(per_task), 3, figsize=(16, 4.5 * len(per_task)), squeeze=False)
    for row, (task, summaries) in zip(axes, per_task.items(), strict=True):
        _plot_row(row, summaries, task)
    fig.suptitle(title + " (error bars: Wilson 95 %)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(doc: dict[str, Any], per_task: dict[str, list[RunSummary]], out_json: Path, out_png: Path,
          title: str) -> None:  # fmt: skip
    """``doc["tasks"][task]`` gets that task's runs (agreement filled in) and ratios; one plot row per task."""
    for task, summaries in per_task.items():
        add_agreement(summaries)
        block = doc.setdefault("tasks", {}).setdefault(task, {})
        block["runs"] = [asdict(s) for s in summaries]
        block["ratios"] = ratios(summaries)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(doc, indent=1))
    plot(per_task, title, out_png)


def rerender(json_path: Path, png_path: Path) -> dict[str, Any]:
    """Recompute ratios and the plot from a results JSON (e.g. after a fix in the derived numbers)."""
    doc = json.loads(json_path.read_text())
    per_task = {task: [RunSummary(**run) for run in block["runs"]] for task, block in doc["tasks"].items()}
    write(doc, per_task, json_path, png_path, title_of(doc))
    return doc


def title_of(doc: dict[str, Any]) -> str:
    tasks = ", ".join(f"{t}: {b.get('items', '?')} items, max {b['config']['max_new_tokens']} new tokens"
                      for t, b in doc["tasks"].items())  # fmt: skip
    return f"{doc['pair']['name']} pair: {tasks}"
