"""Rolling-window entropy with hysteresis and a minimum dwell (after Entropy Adaptive Decoding).

The gate is in one of two states, local or escalating. It enters escalating when the mean entropy of
the last ``window`` positions reaches ``threshold`` and leaves it when the mean falls to
``exit_ratio * threshold`` or below; either state is held for at least ``min_dwell`` positions, so the
edge does not flap between models on every token.
"""

from __future__ import annotations

from collections import deque

from client_edge.gates.base import Gate, entropy_nats
from client_edge.runner.base import StepOutput


class RollingEntropyGate(Gate):
    name = "rolling_entropy"

    def __init__(
        self, threshold: float = 1.0, window: int = 4, exit_ratio: float = 0.7, min_dwell: int = 2
    ) -> None:
        if threshold < 0.0:
            raise ValueError(f"rolling_entropy threshold must be >= 0 nats, got {threshold}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0.0 < exit_ratio <= 1.0:
            raise ValueError(f"exit_ratio must be in (0, 1], got {exit_ratio}")
        if min_dwell < 1:
            raise ValueError(f"min_dwell must be >= 1, got {min_dwell}")
        super().__init__(threshold)
        self.window = window
        self.exit_ratio = exit_ratio
        self.min_dwell = min_dwell
        self.reset()

    def reset(self) -> None:
        self._recent: deque[float] = deque(maxlen=self.window)
        self._escalating = False
        self._dwell = self.min_dwell  # free to switch at the first position

    def score(self, step: StepOutput) -> float:
        return entropy_nats(step.logits)

    def decide_from_score(self, score: float) -> bool:
        self._recent.append(score)
        mean = sum(self._recent) / len(self._recent)
        if self._dwell >= self.min_dwell:
            switch = mean <= self.exit_ratio * self.threshold if self._escalating else mean >= self.threshold
            if switch:
                self._escalating = not self._escalating
                self._dwell = 0
        self._dwell += 1
        return self._escalating

    def with_threshold(self, threshold: float) -> RollingEntropyGate:
        return RollingEntropyGate(threshold, self.window, self.exit_ratio, self.min_dwell)
