"""Learned token router (CITER): an MLP on the edge model's last hidden state predicts the probability
that the edge's greedy token is wrong; the gate escalates when it reaches the threshold.

A trained router is two files with one stem: ``<stem>.npz`` (weights ``w0, b0, w1, b1, ...``; ReLU
between layers, one logit out) and ``<stem>.json`` (``RouterMetadata``). Inference is numpy only;
training (``client_edge.gates.mlp_train``) needs torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from client_edge.errors import HiddenStatesUnavailableError, InvalidLogitsError
from client_edge.gates.base import Gate
from client_edge.runner.base import StepOutput


@dataclass(frozen=True)
class RouterMetadata:
    """What the router was trained on; the gate refuses a runner whose hidden size differs."""

    hidden_size: int
    layer_sizes: tuple[int, ...]
    tokenizer_fingerprint: str
    edge_model: str
    keep_layers: tuple[int, ...] | None
    positive_rate: float
    train_examples: int
    train_tokens: int
    val_accuracy: float
    val_auc: float
    thresholds_by_rate: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RouterMetadata:
        d = json.loads(text)
        d["layer_sizes"] = tuple(d["layer_sizes"])
        d["keep_layers"] = None if d["keep_layers"] is None else tuple(d["keep_layers"])
        return cls(**d)


@dataclass(frozen=True)
class MLPRouter:
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    metadata: RouterMetadata

    def logit(self, hidden: np.ndarray) -> float:
        """``hidden: [H]`` -> logit of P(edge token wrong)."""
        x = hidden.astype(np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < last:
                x = np.maximum(x, 0.0)
        return float(x[0])

    def save(self, stem: Path) -> tuple[Path, Path]:
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(self.biases)})
        npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
        np.savez(npz, **arrays)
        meta.write_text(self.metadata.to_json())
        return npz, meta

    @classmethod
    def load(cls, stem: Path) -> MLPRouter:
        stem = Path(stem)
        npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
        for p in (npz, meta):
            if not p.is_file():
                raise FileNotFoundError(f"router file {p} not found (train one with `xedge train-router`)")
        metadata = RouterMetadata.from_json(meta.read_text())
        with np.load(npz) as z:
            n = len(metadata.layer_sizes) - 1
            weights = tuple(z[f"w{i}"].astype(np.float32) for i in range(n))
            biases = tuple(z[f"b{i}"].astype(np.float32) for i in range(n))
        return cls(weights, biases, metadata)


class MLPRouterGate(Gate):
    """Score = sigmoid(router(hidden)) = predicted P(the edge's greedy token is wrong)."""

    name = "mlp"
    needs_hidden_states = True

    def __init__(
        self, threshold: float = 0.5, router: MLPRouter | None = None, path: Path | None = None
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"mlp threshold must be in [0, 1], got {threshold}")
        if (router is None) == (path is None):
            raise ValueError("MLPRouterGate needs exactly one of router= or path=")
        super().__init__(threshold)
        self.router = router if router is not None else MLPRouter.load(Path(path))  # type: ignore[arg-type]

    def score(self, step: StepOutput) -> float:
        expected = self.router.metadata.hidden_size
        if step.hidden is None:
            raise HiddenStatesUnavailableError(
                "the mlp gate reads the edge model's last hidden state; this runner does not expose hidden "
                "states (llama.cpp): use a logits-only gate (entropy, top1, rolling_entropy, random) or the "
                "transformers runner"
            )
        if step.hidden.shape != (expected,):
            raise ValueError(f"router expects hidden [{expected}], got {list(step.hidden.shape)}")
        if not np.isfinite(step.hidden).all():  # a NaN score would be a gate that silently never fires
            raise InvalidLogitsError(
                f"the hidden state holds {int((~np.isfinite(step.hidden)).sum())} NaN/inf of {expected} values: "
                "the local model's output cannot be scored"
            )
        return float(1.0 / (1.0 + np.exp(-self.router.logit(step.hidden))))

    def with_threshold(self, threshold: float) -> MLPRouterGate:
        return MLPRouterGate(threshold, router=self.router)
