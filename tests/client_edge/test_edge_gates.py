"""Gates: scores, hysteresis and dwell, the registry, calibration, and the MLP router's file format."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from client_edge.errors import InvalidLogitsError, UnknownNameError
from client_edge.gates import GATES, create_gate
from client_edge.gates.base import entropy_nats
from client_edge.gates.calibrate import calibrate, escalation_rate
from client_edge.gates.confidence import EntropyGate, Top1ProbGate
from client_edge.gates.mlp import MLPRouter, MLPRouterGate, RouterMetadata
from client_edge.gates.random_gate import RandomGate
from client_edge.gates.rolling_entropy import RollingEntropyGate
from client_edge.runner.base import StepOutput


def _step(logits: list[float], hidden: list[float] | None = None) -> StepOutput:
    return StepOutput(np.asarray(logits, np.float32), np.asarray(hidden or [0.0], np.float32))


def test_entropy_of_uniform_and_peaked() -> None:
    assert entropy_nats(np.zeros(50, np.float32)) == pytest.approx(math.log(50), rel=1e-6)
    assert entropy_nats(np.array([100.0, 0.0, 0.0], np.float32)) < 1e-6
    # large logits must not overflow
    assert entropy_nats(np.array([1e4, 1e4], np.float32)) == pytest.approx(math.log(2), rel=1e-6)


def test_masked_logits_count_as_probability_zero() -> None:
    """-inf is how a runner masks a token; the entropy is that of the others, not NaN (a gate that never fires)."""
    masked = np.array([0.0, 0.0, -np.inf, -np.inf], np.float32)
    assert entropy_nats(masked) == pytest.approx(math.log(2), rel=1e-6)
    assert EntropyGate(0.5).decide(StepOutput(masked, None))
    assert RollingEntropyGate(0.5, window=1, min_dwell=1).decide(StepOutput(masked, None))
    assert Top1ProbGate(0.4).score(StepOutput(masked, None)) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [[0.0, np.nan, 1.0], [0.0, np.inf, 1.0], [-np.inf, -np.inf]])
@pytest.mark.parametrize("gate", [EntropyGate(1.0), Top1ProbGate(0.5), RollingEntropyGate(1.0)], ids=lambda g: g.name)
def test_logits_without_a_distribution_are_a_typed_error(bad: list[float], gate: object) -> None:
    with pytest.raises(InvalidLogitsError, match=r"NaN, .* \+inf and .* finite"):
        gate.decide(StepOutput(np.asarray(bad, np.float32), None))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["entropy", "rolling_entropy", "top1", "random", "mlp"])
def test_nan_threshold_is_rejected(name: str) -> None:
    kw = {"path": Path("unused")} if name == "mlp" else {}
    with pytest.raises(ValueError, match="threshold"):
        create_gate(name, threshold=float("nan"), **kw)


def test_top1_and_entropy_gates() -> None:
    sure, unsure = _step([10.0, 0.0, 0.0]), _step([0.0, 0.0, 0.0])
    top1 = Top1ProbGate(threshold=0.5)
    assert top1.score(unsure) == pytest.approx(2 / 3)
    assert top1.decide(unsure) and not top1.decide(sure)
    ent = EntropyGate(threshold=1.0)
    assert ent.decide(unsure) and not ent.decide(sure)


def test_rolling_entropy_hysteresis_and_dwell() -> None:
    g = RollingEntropyGate(threshold=1.0, window=1, exit_ratio=0.5, min_dwell=3)
    scores = [1.2, 0.7, 0.7, 0.7, 0.4, 0.7, 0.7, 1.5, 0.1, 0.1, 0.1]
    got = [g.decide_from_score(s) for s in scores]
    # enters at 1.2; the fourth 0.7 is past the dwell but above the exit level 0.5 (hysteresis): stays;
    # leaves at 0.4; 1.5 re-enters once 3 positions were spent local; 0.1 cannot leave before the dwell
    assert got == [True, True, True, True, False, False, False, True, True, True, False]
    g.reset()
    assert g.decide_from_score(0.2) is False


def test_rolling_entropy_window_smooths_a_spike() -> None:
    g = RollingEntropyGate(threshold=1.0, window=4, exit_ratio=0.9, min_dwell=1)
    assert [g.decide_from_score(s) for s in [0.2, 0.2, 2.0, 0.2]] == [False, False, False, False]
    assert g.decide_from_score(3.0) is True  # mean of last 4 = 1.35


def test_registry_creates_and_lists_valid_names() -> None:
    assert isinstance(create_gate("entropy", threshold=0.3), EntropyGate)
    with pytest.raises(UnknownNameError) as info:
        create_gate("entropyy")
    for name in GATES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Top1ProbGate(1.5),
        lambda: EntropyGate(-1),
        lambda: RollingEntropyGate(window=0),
        lambda: RollingEntropyGate(exit_ratio=0),
        lambda: RandomGate.at_rate(2.0),
    ],
)
def test_bad_gate_config_rejected(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        bad()


def test_random_gate_rate_extremes_and_middle() -> None:
    steps = [_step([0.0])] * 4000
    never, always, quarter = (
        RandomGate.at_rate(0.0),
        RandomGate.at_rate(1.0),
        RandomGate.at_rate(0.25, seed=3),
    )
    assert not any(never.decide(s) for s in steps)
    assert all(always.decide(s) for s in steps)
    rate = sum(quarter.decide(s) for s in steps) / len(steps)
    assert abs(rate - 0.25) < 0.03


@pytest.mark.parametrize("target", [0.05, 0.2, 0.5])
def test_calibration_hits_target_rate(target: float) -> None:
    rng = random.Random(0)
    answers = [[rng.expovariate(1.0) for _ in range(rng.randint(20, 80))] for _ in range(30)]
    for gate in (EntropyGate(), RollingEntropyGate(window=3, min_dwell=2)):
        cal = calibrate(gate, answers, target)
        assert abs(cal.achieved_rate - target) < 0.03, (gate.name, cal)
        assert escalation_rate(gate.with_threshold(cal.threshold), answers) == pytest.approx(
            cal.achieved_rate
        )


def _router(hidden: int = 4) -> MLPRouter:
    rng = np.random.default_rng(0)
    meta = RouterMetadata(
        hidden_size=hidden,
        layer_sizes=(hidden, 3, 1),
        tokenizer_fingerprint="fp",
        edge_model="toy",
        keep_layers=None,
        positive_rate=0.3,
        train_examples=1,
        train_tokens=1,
        val_accuracy=0.5,
        val_auc=0.5,
        thresholds_by_rate={"0.1": 0.7},
    )
    w = (rng.normal(size=(hidden, 3)).astype(np.float32), rng.normal(size=(3, 1)).astype(np.float32))
    b = (rng.normal(size=3).astype(np.float32), rng.normal(size=1).astype(np.float32))
    return MLPRouter(w, b, meta)


def test_mlp_router_save_load_and_score(tmp_path: Path) -> None:
    r = _router()
    r.save(tmp_path / "router")
    loaded = MLPRouter.load(tmp_path / "router")
    assert loaded.metadata == r.metadata
    h = np.array([0.5, -1.0, 2.0, 0.1], np.float32)
    manual = (np.maximum(h @ r.weights[0] + r.biases[0], 0) @ r.weights[1] + r.biases[1])[0]
    gate = MLPRouterGate(0.5, path=tmp_path / "router")
    assert gate.score(_step([0.0], h.tolist())) == pytest.approx(1 / (1 + math.exp(-manual)), rel=1e-5)


def test_mlp_gate_rejects_wrong_hidden_size_and_missing_file(tmp_path: Path) -> None:
    gate = MLPRouterGate(0.5, router=_router(4))
    with pytest.raises(ValueError, match="expects hidden"):
        gate.score(_step([0.0], [1.0, 2.0]))
    with pytest.raises(FileNotFoundError, match="train-router"):
        MLPRouterGate(0.5, path=tmp_path / "absent")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_mlp_gate_refuses_a_hidden_state_it_cannot_score(bad: float) -> None:
    """A NaN score never reaches the threshold: the gate used to stay silent on a broken local model."""
    gate = MLPRouterGate(0.5, router=_router(4))
    with pytest.raises(InvalidLogitsError, match="hidden state holds 1 NaN/inf of 4"):
        gate.decide(_step([0.0], [0.5, bad, 2.0, 0.1]))


def test_router_training_learns_the_fake_models_uncertainty(tmp_path: Path) -> None:
    """The fake edge is wrong exactly where its hidden[0] is +5: a trained router must find that."""
    pytest.importorskip("torch")
    from client_edge.gates.mlp_train import TrainConfig, auc, collect_examples, train_mlp
    from tests.fakes.edge_runner import FakeRunner, cloud_greedy

    runner = FakeRunner()
    pairs = [([i % 39, (i * 7) % 39, 3], cloud_greedy([i % 39, (i * 7) % 39, 3], 30)) for i in range(40)]
    ex = collect_examples(runner, pairs)
    assert ex.features.shape == (40 * 30, 8)
    assert 0.1 < ex.labels.mean() < 0.3  # every fifth position is wrong
    router = train_mlp(
        ex,
        TrainConfig(hidden_sizes=(16,), epochs=40),
        tokenizer_fingerprint="fp",
        edge_model="fake",
        keep_layers=None,
    )
    assert router.metadata.val_auc > 0.95 and router.metadata.val_accuracy > 0.9
    router.save(tmp_path / "r")
    gate = MLPRouterGate(router.metadata.thresholds_by_rate["0.2"], path=tmp_path / "r")
    unsure, sure = (
        runner.prefill([1, 2, 3, 4, 5]),
        runner.prefill([1, 2, 3, 4]),
    )  # the edge errs at length % 5 == 0
    assert gate.decide(unsure) and not gate.decide(sure)
    assert auc(np.array([0.1, 0.9, 0.8, 0.2]), np.array([0, 1, 1, 0])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
