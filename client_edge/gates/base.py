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

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from client_edge.runner.base import StepOutput


class Gate(ABC):
    name: ClassVar[str]
    #: True for gates that read ``StepOutput.hidden`` (refused on runners without hidden states)
    needs_hidden_states: ClassVar[bool] = False

    def __init__(self, threshold: float) -> None:
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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - float(np.max(logits))
    e = np.exp(z)
    return e / e.sum()


def entropy_nats(logits: np.ndarray) -> float:
    """Shannon entropy of softmax(logits) in nats, computed stably from log-probabilities."""
    z = logits.astype(np.float64) - float(np.max(logits))
    log_z = float(np.log(np.exp(z).sum()))
    logp = z - log_z
    return float(-(np.exp(logp) * logp).sum())
