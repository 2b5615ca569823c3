"""Threshold calibration: pick the threshold whose escalation rate on recorded answers is nearest a target.

The rate is measured by replaying ``decide_from_score`` over each recorded answer (``reset()`` between
answers), so stateful gates (hysteresis, dwell) are calibrated as they run, not as if stateless. Scores
come from the edge's own greedy trajectory; once escalations change the trajectory the live rate drifts
a little, which the evaluation reports by measuring the live rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from client_edge.gates.base import Gate


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_rate: float
    achieved_rate: float
    positions: int


def escalation_rate(gate: Gate, answers: Sequence[Sequence[float]]) -> float:
    """Fraction of positions ``gate`` escalates when replayed over per-answer score sequences."""
    total = hits = 0
    for scores in answers:
        gate.reset()
        for s in scores:
            hits += gate.decide_from_score(s)
        total += len(scores)
    if total == 0:
        raise ValueError("no recorded positions to calibrate on")
    return hits / total


def calibrate(gate: Gate, answers: Sequence[Sequence[float]], target_rate: float) -> Calibration:
    """Search the recorded scores (as candidate thresholds) for the rate nearest ``target_rate``."""
    if not 0.0 <= target_rate <= 1.0:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate}")
    flat = np.concatenate([np.asarray(a, dtype=np.float64) for a in answers if len(a)] or [np.zeros(0)])
    if flat.size == 0:
        raise ValueError("no recorded positions to calibrate on")
    # candidates: every distinct score plus one just above the max (escalate nothing)
    candidates = np.unique(np.append(flat, np.nextafter(flat.max(), np.inf)))
    lo, hi = 0, len(candidates) - 1  # rate is (roughly) non-increasing in the threshold index
    best: tuple[float, float] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        t = float(candidates[mid])
        rate = escalation_rate(gate.with_threshold(t), answers)
        if best is None or abs(rate - target_rate) < abs(best[1] - target_rate):
            best = (t, rate)
        if rate > target_rate:
            lo = mid + 1
        elif rate < target_rate:
            hi = mid - 1
        else:
            break
    assert best is not None
    return Calibration(
        threshold=best[0], target_rate=target_rate, achieved_rate=best[1], positions=int(flat.size)
    )
