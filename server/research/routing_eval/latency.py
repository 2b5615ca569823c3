"""Per-call latency summaries and ratios (pure: no HTTP, no vLLM), for bench/routing_latency.py.

A sample is one timed call: ``{"dtype": ..., "kind": ..., "ms": ..., "warmup": bool, ...}``. Warm-up
samples are kept in the results but never enter a summary.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def summaries_by(
    samples: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str] = lambda s: s["kind"]
) -> dict[str, dict[str, LatencySummary]]:
    """``{dtype: {key(sample): summary}}`` of the non-warm-up samples, keys in the order they first appear.
    ``key`` defaults to the call kind; a finer key splits a kind by what the call did (e.g. tokens kept)."""
    times: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s["warmup"]:
            continue
        times.setdefault(s["dtype"], {}).setdefault(key(s), []).append(float(s["ms"]))
    return {dtype: {kind: summarise(ms) for kind, ms in kinds.items()} for dtype, kinds in times.items()}


def same_work_ratio(
    num: Sequence[Mapping[str, Any]],
    den: Sequence[Mapping[str, Any]],
    work: Callable[[Mapping[str, Any]], object],
) -> dict[str, Any]:
    """:func:`ratio` of two groups of timed calls, only when every call of both did the same work.

    ``work(sample)`` is what the engine did (e.g. prompt / cached / output tokens). A group that mixes
    outcomes (a verify that stopped early in some calls) or differs from the other gives
    ``{"not_comparable": why}`` instead of a ratio; an empty group gives ``{"missing": why}``.
    """
    if not num or not den:
        return {"missing": "no samples" + (" in the numerator" if not num else " in the denominator")}
    works = {repr(work(s)) for s in num} | {repr(work(s)) for s in den}
    if len(works) != 1:
        return {"not_comparable": f"the calls did different work: {sorted(works)}"}
    return ratio(summarise([s["ms"] for s in num]), summarise([s["ms"] for s in den]))
