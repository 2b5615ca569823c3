"""Escalation gates: per generated position, decide whether the edge asks the cloud for the token.

Contract (every gate):
- ``score(step)`` maps the edge model's step output to an uncertainty score (higher = less sure);
  it is pure: no state;
- ``decide_from_score(score) -> bool`` says whether to escalate this position given its score; stateful
  gates (hysteresis, dwell) keep their state between calls and ``reset()`` clears it at the start of
  each answer; ``decide(step)`` is the two chained;
- ``threshold`` is the one knob that moves the escalation rate (a higher threshold escalates less; for
  stateful gates only roughly, so calibration measures the rate by replay instead of assuming it);
  ``with_threshold(t)`` returns a fresh gate with everything else equal.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from client_edge.errors import InvalidLogitsError
from client_edge.runner.base import StepOutput


class Gate(ABC):
    name: ClassVar[str]
    #: True for gates that read ``StepOutput.hidden`` (refused on runners without hidden states)
    needs_hidden_states: ClassVar[bool] = False

    def __init__(self, threshold: float) -> None:
        if math.isnan(threshold):  # every comparison with NaN is False: the gate would never escalate
            raise ValueError(f"{self.name} threshold must be a number, got {threshold}")
        self.threshold = float(threshold)

    @abstractmethod
    def score(self, step: StepOutput) -> float: ...

    def decide_from_score(self, score: float) -> bool:
        return score >= self.threshold

    def decide(self, step: StepOutput) -> bool:
        return self.decide_from_score(self.score(step))

    def reset(self) -> None:  # noqa: B027 - optional hook; stateless gates keep nothing
        """Clear per-answer state (stateless gates have none)."""

    @abstractmethod
    def with_threshold(self, threshold: float) -> Gate: ...


def _shifted(logits: np.ndarray) -> np.ndarray:
    """``logits - max(logits)`` in float64. -inf marks a masked token (probability 0); NaN or +inf has
    no probability at all, and would turn every score into NaN, a gate that silently never fires."""
    z = logits.astype(np.float64)
    top = z.max()  # NaN if any is NaN, +inf if any is +inf, -inf if all are
    if not np.isfinite(top):
        raise InvalidLogitsError(
            f"logits over {z.size} tokens hold {int(np.isnan(z).sum())} NaN, {int(np.isposinf(z).sum())} "
            f"+inf and {int(np.isfinite(z).sum())} finite values: the local model's output cannot be scored"
        )
    return z - top


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(_shifted(logits))
    return e / e.sum()


def entropy_nats(logits: np.ndarray) -> float:
    """Shannon entropy of softmax(logits) in nats, computed stably from log-probabilities."""
    z = _shifted(logits)
    logp = z - float(np.log(np.exp(z).sum()))
    p = np.exp(logp)
    return float(-(p * np.where(p > 0.0, logp, 0.0)).sum())  # 0 log 0 = 0 (masked tokens)
