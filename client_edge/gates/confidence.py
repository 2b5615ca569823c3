"""Stateless confidence gates: top-1 probability and entropy (forking tokens, "Beyond the 80/20 rule")."""

from __future__ import annotations

import numpy as np

from client_edge.gates.base import Gate, entropy_nats, softmax
from client_edge.runner.base import StepOutput


class Top1ProbGate(Gate):
    """Score ``1 - p_top1``: escalate when the edge's most likely token has probability ``<= 1 - t``."""

    name = "top1"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"top1 threshold must be in [0, 1], got {threshold}")
        super().__init__(threshold)

    def score(self, step: StepOutput) -> float:
        return 1.0 - float(np.max(softmax(step.logits)))

    def with_threshold(self, threshold: float) -> Top1ProbGate:
        return Top1ProbGate(threshold)


class EntropyGate(Gate):
    """Score = entropy of the next-token distribution in nats; high entropy marks a forking token."""

    name = "entropy"

    def __init__(self, threshold: float = 1.0) -> None:
        if threshold < 0.0:
            raise ValueError(f"entropy threshold must be >= 0 nats, got {threshold}")
        super().__init__(threshold)

    def score(self, step: StepOutput) -> float:
        return entropy_nats(step.logits)

    def with_threshold(self, threshold: float) -> EntropyGate:
        return EntropyGate(threshold)
