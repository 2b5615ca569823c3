"""Random escalation at a fixed rate: the baseline every learned gate must beat at the same rate."""

from __future__ import annotations

import random

from client_edge.gates.base import Gate
from client_edge.runner.base import StepOutput


class RandomGate(Gate):
    """Score is a uniform draw in [0, 1); ``threshold = 1 - rate``. ``rate`` 0 = small only, 1 = cloud only."""

    name = "random"

    def __init__(self, threshold: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"random threshold must be in [0, 1], got {threshold}")
        super().__init__(threshold)
        self.seed = seed
        self._rng = random.Random(seed)

    @classmethod
    def at_rate(cls, rate: float, seed: int = 0) -> RandomGate:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        return cls(1.0 - rate, seed)

    def reset(self) -> None:
        """Keeps the stream: each answer gets fresh draws, the run stays reproducible from the seed."""

    def score(self, step: StepOutput) -> float:
        return self._rng.random()

    def with_threshold(self, threshold: float) -> RandomGate:
        return RandomGate(threshold, self.seed)
