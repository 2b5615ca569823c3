"""Training the CITER-style token router: features, labels, a small MLP, and its evaluation.

Label (per reference token): 1 when the edge model's greedy prediction, teacher-forced along the
reference chain of thought, differs from the reference token: the positions where the edge alone would
go wrong and the cloud should be asked. Feature: the edge's last hidden state at the position that
predicts that token (exactly what ``StepOutput.hidden`` holds at generation time). torch is imported
inside ``train_mlp`` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from client_edge.gates.mlp import MLPRouter, RouterMetadata
from client_edge.runner.base import ModelRunner


@dataclass(frozen=True)
class RouterExamples:
    """``features: [N, H]`` float32, ``labels: [N]`` 0/1, ``answer_index: [N]`` (for a split by answer)."""

    features: np.ndarray
    labels: np.ndarray
    answer_index: np.ndarray


@dataclass(frozen=True)
class TrainConfig:
    hidden_sizes: tuple[int, ...] = (256,)
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")


def collect_examples(
    runner: ModelRunner, pairs: Iterable[tuple[list[int], list[int]]], max_tokens: int = 256
) -> RouterExamples:
    """``pairs``: (prompt ids, reference continuation ids). One teacher-forced pass per pair."""
    feats, labels, index = [], [], []
    for i, (prompt, ref) in enumerate(pairs):
        ref = ref[:max_tokens]
        if not prompt or not ref:
            raise ValueError(f"pair {i}: prompt and reference must both be non-empty")
        out = runner.teacher_forced(prompt + ref)
        rows = slice(len(prompt) - 1, len(prompt) - 1 + len(ref))  # row j predicts token j + 1
        greedy = out.logits[rows].argmax(axis=-1)
        feats.append(out.hidden[rows].astype(np.float32))
        labels.append((greedy != np.asarray(ref)).astype(np.float32))
        index.append(np.full(len(ref), i, dtype=np.int64))
    if not feats:
        raise ValueError("no training pairs")
    return RouterExamples(np.concatenate(feats), np.concatenate(labels), np.concatenate(index))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks); NaN when one class is missing."""
    pos, neg = int(labels.sum()), int(len(labels) - labels.sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def train_mlp(
    ex: RouterExamples,
    cfg: TrainConfig,
    *,
    tokenizer_fingerprint: str,
    edge_model: str,
    keep_layers: tuple[int, ...] | None,
    rates: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
) -> MLPRouter:
    """Train on a split by answer (no answer in both train and validation); report validation metrics
    and, per target rate, the threshold that escalates that fraction of validation tokens."""
    import torch

    rng = np.random.default_rng(cfg.seed)
    answers = np.unique(ex.answer_index)
    val_answers = rng.choice(answers, size=max(1, int(len(answers) * cfg.val_fraction)), replace=False)
    val = np.isin(ex.answer_index, val_answers)
    if val.all() or not val.any():
        raise ValueError(f"need at least 2 answers to split train/validation, got {len(answers)}")
    x_tr, y_tr = torch.from_numpy(ex.features[~val]), torch.from_numpy(ex.labels[~val])
    x_va, y_va = ex.features[val], ex.labels[val]

    torch.manual_seed(cfg.seed)
    sizes = (ex.features.shape[1], *cfg.hidden_sizes, 1)
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    pos = float(y_tr.mean())
    pos_weight = torch.tensor((1 - pos) / max(pos, 1e-6))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x_tr), generator=gen)
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            opt.zero_grad()
            loss_fn(net(x_tr[idx]).squeeze(-1), y_tr[idx]).backward()
            opt.step()

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = tuple(m.weight.detach().numpy().T.copy() for m in linears)
    biases = tuple(m.bias.detach().numpy().copy() for m in linears)
    draft = MLPRouter(
        weights, biases, _metadata(sizes, tokenizer_fingerprint, edge_model, keep_layers, ex, 0, 0, {})
    )
    val_scores = 1.0 / (1.0 + np.exp(-np.array([draft.logit(h) for h in x_va])))
    acc = float(((val_scores >= 0.5) == (y_va == 1)).mean())
    thresholds = {f"{r:g}": float(np.quantile(val_scores, 1.0 - r)) for r in rates}
    meta = _metadata(
        sizes, tokenizer_fingerprint, edge_model, keep_layers, ex, acc, auc(val_scores, y_va), thresholds
    )
    return MLPRouter(weights, biases, meta)


def _metadata(
    sizes: tuple[int, ...],
    fingerprint: str,
    edge_model: str,
    keep_layers: tuple[int, ...] | None,
    ex: RouterExamples,
    acc: float,
    val_auc: float,
    thresholds: dict[str, float],
) -> RouterMetadata:
    return RouterMetadata(
        hidden_size=sizes[0],
        layer_sizes=sizes,
        tokenizer_fingerprint=fingerprint,
        edge_model=edge_model,
        keep_layers=keep_layers,
        positive_rate=float(ex.labels.mean()),
        train_examples=int(len(np.unique(ex.answer_index))),
        train_tokens=int(len(ex.labels)),
        val_accuracy=acc,
        val_auc=val_auc,
        thresholds_by_rate=thresholds,
    )
