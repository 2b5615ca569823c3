"""A gate that never escalates and records, per answer, the scores several gates would have given:
one small-only pass yields the calibration data for every gate at once."""

from __future__ import annotations

from client_edge.gates.base import Gate
from client_edge.runner.base import StepOutput


class ScoreRecorder(Gate):
    name = "recorder"

    def __init__(self, gates: dict[str, Gate]) -> None:
        super().__init__(threshold=float("inf"))
        self.gates = gates
        self.answers: dict[str, list[list[float]]] = {name: [] for name in gates}

    def reset(self) -> None:
        for seqs in self.answers.values():
            seqs.append([])

    def score(self, step: StepOutput) -> float:
        for name, gate in self.gates.items():
            self.answers[name][-1].append(gate.score(step))
        return 0.0

    def decide_from_score(self, score: float) -> bool:
        return False

    def with_threshold(self, threshold: float) -> Gate:
        raise NotImplementedError("the recorder has no threshold")
