"""Bad input to the edge SDK: typed errors naming the problem, raised before anything is generated."""

from __future__ import annotations

import numpy as np
import pytest

from client_edge._base_client import RequestOptions
from client_edge.errors import ContextLengthError, HiddenStatesUnavailableError, TokenizerMismatchError
from client_edge.gates.confidence import EntropyGate
from client_edge.gates.mlp import MLPRouter, MLPRouterGate, RouterMetadata
from client_edge.runner.base import StepOutput
from client_edge.session import EdgeSession, SessionConfig
from tests.client_edge.router_cloud import router_cloud
from tests.fakes.edge_runner import HIDDEN, FakeRunner, V
from tests.fakes.engine import FakeTokenizer

PROMPT = [3, 1, 4, 1, 5]


class NoHiddenRunner(FakeRunner):
    provides_hidden_states = False


class ShortRunner(FakeRunner):
    @property
    def context_length(self) -> int:
        return 16


def _mlp_gate() -> MLPRouterGate:
    meta = RouterMetadata(HIDDEN, (HIDDEN, 1), "fp", "fake", None, 0.5, 1, 1, 0.5, 0.5)
    router = MLPRouter((np.ones((HIDDEN, 1), np.float32),), (np.zeros(1, np.float32),), meta)
    return MLPRouterGate(0.5, router=router)


def test_hidden_state_gate_on_a_runner_without_hidden_states_is_refused() -> None:
    with pytest.raises(HiddenStatesUnavailableError, match="mlp"):
        EdgeSession(NoHiddenRunner(), _mlp_gate(), None)
    # and the gate itself says so if a step without hidden states reaches it
    with pytest.raises(HiddenStatesUnavailableError, match="hidden state"):
        _mlp_gate().score(StepOutput(np.zeros(4, np.float32), None))
    # logits-only gates run on such a runner
    res = EdgeSession(NoHiddenRunner(), EntropyGate(1.0), None, SessionConfig(max_new_tokens=5)).generate(PROMPT)
    assert len(res.token_ids) == 5


def test_context_longer_than_the_local_model_is_a_typed_error() -> None:
    session = EdgeSession(ShortRunner(), EntropyGate(1.0), None, SessionConfig(max_new_tokens=12))
    with pytest.raises(ContextLengthError, match=r"prompt \(5 tokens\) plus max_new_tokens \(12\).*holds 16"):
        session.generate(PROMPT)
    assert len(EdgeSession(ShortRunner(), EntropyGate(1.0), None, SessionConfig(max_new_tokens=11)).generate(PROMPT).token_ids) == 11


def test_token_mode_with_a_tokenizer_the_cloud_does_not_share_is_a_typed_error() -> None:
    # the cloud tokenises with the router's fake tokenizer; the edge's toy tokenizer differs
    with router_cloud(tok=FakeTokenizer()) as cloud, cloud.client() as client:
        session = EdgeSession(FakeRunner(), EntropyGate(1.0), client, SessionConfig(max_new_tokens=8))
        with pytest.raises(TokenizerMismatchError, match="fingerprint_mismatch|mode='text'"):
            session.generate(PROMPT)
        # lazily opened sessions (no prefill) fail the same way, not as a silent local answer
        cfg = SessionConfig(max_new_tokens=8, prefill_prompt=False)
        with pytest.raises(TokenizerMismatchError):
            EdgeSession(FakeRunner(), EntropyGate(0.0), client, cfg).generate(PROMPT)
        # text mode is the way to use a different tokenizer
        res = EdgeSession(FakeRunner(), EntropyGate(1.0), client, SessionConfig(mode="text", max_new_tokens=8)).generate(PROMPT)
        assert res.n_unverified == 0 and res.unsynced_units == 0


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"max_new_tokens": float("nan")}, TypeError, "max_new_tokens must be an int, got float nan"),
        ({"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be an int"),
        ({"draft_len": True}, TypeError, "draft_len must be an int, got bool"),
        ({"failure_cooldown": "16"}, TypeError, "failure_cooldown must be an int, got str"),
        ({"cloud_deadline_s": 0.0}, ValueError, "cloud_deadline_s must be > 0"),
        ({"cloud_deadline_s": float("nan")}, ValueError, "cloud_deadline_s must be > 0, got nan"),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
    ],
)
def test_bad_session_config_is_refused_when_built(kw: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SessionConfig(**kw)


def test_nan_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="deadline_s must be > 0"):
        RequestOptions(deadline_s=float("nan"))


def test_stream_result_survives_a_second_iteration() -> None:
    stream = EdgeSession(FakeRunner(), EntropyGate(1.0), None, SessionConfig(max_new_tokens=4)).stream(PROMPT)
    assert sum(len(ids) for ids, _ in stream) == 4
    assert list(stream) == [] and next(stream, None) is None  # exhausted: iterating again yields nothing
    assert stream.result is not None and len(stream.result.token_ids) == 4


@pytest.mark.parametrize(
    ("prompt", "error", "match"),
    [
        ("3 1 4", TypeError, "list of token ids"),
        ([3, 1.5, 4], TypeError, "list of token ids"),
        ([3, True], TypeError, "list of token ids"),
        ([], ValueError, "must not be empty"),
        ([3, -1, V + 2], ValueError, r"\[-1, 46\] outside the local model's vocabulary \[0, 44\)"),
    ],
)
def test_bad_prompt_ids_are_refused_before_anything_runs(prompt: object, error: type[Exception], match: str) -> None:
    runner = FakeRunner()
    with pytest.raises(error, match=match):
        EdgeSession(runner, EntropyGate(1.0), None, SessionConfig(max_new_tokens=4)).generate(prompt)  # type: ignore[arg-type]
    assert runner.forward_tokens == 0
