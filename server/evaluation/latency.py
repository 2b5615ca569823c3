"""Per-call latency summaries and ratios (pure: no HTTP, no vLLM), for bench/routing_latency.py.

A sample is one timed call: ``{"dtype": ..., "kind": ..., "ms": ..., "warmup": bool, ...}``. Warm-up
samples are kept in the results but never enter a summary.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LatencySummary:
    """``n`` timed calls: median, fastest and slowest, in milliseconds."""

    n: int
    p50_ms: float
    min_ms: float
    max_ms: float


def summarise(samples_ms: Sequence[float]) -> LatencySummary:
    """Median / min / max of call times; refuses an empty list and times that are negative or not finite."""
    if not samples_ms:
        raise ValueError("no samples to summarise")
    bad = [x for x in samples_ms if not math.isfinite(x) or x < 0]
    if bad:
        raise ValueError(f"call times must be finite and >= 0 ms, got {bad}")
    return LatencySummary(len(samples_ms), statistics.median(samples_ms), min(samples_ms), max(samples_ms))


def ratio(num: LatencySummary, den: LatencySummary) -> dict[str, float]:
    """``num / den`` of the medians and of the minima (the minimum is the least disturbed by other load)."""
    if den.p50_ms <= 0 or den.min_ms <= 0:
        raise ValueError(f"cannot divide by a zero time: {den}")
    return {"p50": num.p50_ms / den.p50_ms, "min": num.min_ms / den.min_ms}


def summaries_by(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, LatencySummary]]:
    """``{dtype: {kind: summary}}`` of the non-warm-up samples, kinds in the order they first appear."""
    times: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s["warmup"]:
            continue
        times.setdefault(s["dtype"], {}).setdefault(s["kind"], []).append(float(s["ms"]))
    return {dtype: {kind: summarise(ms) for kind, ms in kinds.items()} for dtype, kinds in times.items()}
