"""The edge SDK against the real router app (in process) on the router's fake engine: the protocol as
the router implements it, not as the edge's own fake assumes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from client_edge.client import EdgeClient
from client_edge.gates.confidence import EntropyGate
from client_edge.gates.random_gate import RandomGate
from client_edge.result import TokenSource
from client_edge.runner.base import ModelRunner, StepOutput, TeacherForced
from client_edge.session import EdgeSession, SessionConfig
from router.engine.base import EngineUnavailableError
from tests.client_edge.router_cloud import FAST_RETRY
from tests.fakes.edge_runner import FakeRunner
from tests.fakes.engine import BOS, EOS, FakeEngine, FakeTokenizer, make_app

N = 30


class ToyRunner(ModelRunner):
    """The fake engine's own model on the edge, made wrong (and unsure) at every fourth position."""

    def __init__(self, engine: FakeEngine, tok: FakeTokenizer) -> None:
        self.engine, self.tok, self.ids = engine, tok, []

    def _out(self) -> StepOutput:
        lp = np.asarray(self.engine.logprobs(self.ids), dtype=np.float32)
        best, second = np.argsort(-lp)[:2]
        logits = np.zeros_like(lp)
        if len(self.ids) % 4 == 0:  # the edge is unsure here and its greedy token is the wrong one
            logits[[best, second]] = [3.0, 3.001]
        else:  # confident and right
            logits[best] = 12.0
        return StepOutput(logits, np.zeros(4, np.float32))

    length = property(lambda self: len(self.ids))
    vocab_size = property(lambda self: self.tok.vocab_size)
    hidden_size = property(lambda self: 4)
    eos_token_ids = property(lambda self: frozenset({EOS}))
    tokenizer_fingerprint = property(lambda self: self.tok.fingerprint)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return ([BOS] if add_special_tokens else []) + self.tok.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in (BOS, EOS)])

    def prefill(self, ids: list[int]) -> StepOutput:
        self.ids = []
        return self.append(ids)

    def append(self, ids: list[int]) -> StepOutput:
        self.ids = self.ids + list(ids)
        return self._out()

    def truncate(self, length: int) -> None:
        self.ids = self.ids[:length]

    def teacher_forced(self, ids: list[int]) -> TeacherForced:
        raise NotImplementedError("not needed here")


@pytest.fixture
def env() -> Iterator[tuple[EdgeClient, FakeEngine, FakeTokenizer, TestClient]]:
    app, engine, tok = make_app()
    with TestClient(app) as http:
        yield EdgeClient("http://testserver", retry=FAST_RETRY, http_client=http), engine, tok, http


def _cloud_content(http: TestClient, sid: str) -> dict:
    r = http.get(f"/v1/sessions/{sid}", params={"include_content": "true"})
    assert r.status_code == 200, r.text
    return r.json()["state"]


def _greedy(engine: FakeEngine, prompt: list[int], n: int) -> list[int]:
    return engine.greedy(prompt, n)


PROMPT_TEXT = "the cat and the hat sat"


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_answer_equals_the_cloud_greedy_answer(env, strategy: str) -> None:  # noqa: ANN001
    client, engine, tok, http = env
    runner = ToyRunner(engine, tok)
    prompt = runner.encode(PROMPT_TEXT, add_special_tokens=True)
    gate = RandomGate.at_rate(1.0) if strategy == "escalate" else EntropyGate(0.5)
    cfg = SessionConfig(strategy=strategy, draft_len=4, max_new_tokens=N)
    res = EdgeSession(runner, gate, client, cfg).generate(prompt)
    want = _greedy(engine, prompt, N)
    assert res.token_ids == want
    assert res.n_unverified == 0 and res.unsynced_units == 0 and res.resyncs == 0
    assert _cloud_content(http, res.cloud_session_id)["token_ids"] == prompt + res.token_ids
    if strategy == "speculative":
        assert res.count(TokenSource.VERIFIED) > 0 and res.count(TokenSource.CLOUD) > 0
        assert res.usage.requests < N  # several tokens per round trip


def test_delete_cloud_session_removes_the_answer_from_the_router(env) -> None:  # noqa: ANN001
    client, engine, tok, http = env
    runner = ToyRunner(engine, tok)
    prompt = runner.encode(PROMPT_TEXT, add_special_tokens=True)
    kept = EdgeSession(runner, RandomGate.at_rate(1.0), client, SessionConfig(max_new_tokens=8)).generate(prompt)
    cfg = SessionConfig(max_new_tokens=8, delete_cloud_session=True)
    res = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(prompt)
    assert res.token_ids == kept.token_ids and res.cloud_failures == 0 and res.unsynced_units == 0
    assert res.cloud_session_id is None
    assert _cloud_content(http, kept.cloud_session_id)["token_ids"] == prompt + kept.token_ids  # default: kept
    assert len(http.app.state.service.store) == 1  # only the kept answer's session is left


def test_entropy_gate_escalates_where_the_edge_is_wrong(env) -> None:  # noqa: ANN001
    client, engine, tok, http = env
    runner = ToyRunner(engine, tok)
    prompt = runner.encode(PROMPT_TEXT, add_special_tokens=True)
    res = EdgeSession(runner, EntropyGate(0.5), client, SessionConfig(max_new_tokens=N)).generate(prompt)
    assert res.token_ids == _greedy(engine, prompt, N)
    assert 0 < res.escalated_positions < N
    # stateful: each escalation computes the delta only, never the whole prefix again
    assert res.usage.computed_tokens < len(prompt) + N + 16 * res.usage.requests


def test_engine_down_mid_answer_edge_finishes_with_unverified_tokens(env) -> None:  # noqa: ANN001
    client, engine, tok, http = env
    runner = ToyRunner(engine, tok)
    prompt = runner.encode(PROMPT_TEXT, add_special_tokens=True)
    calls = {"n": 0}
    real_generate = engine.generate

    async def dying(call):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > 3:
            raise EngineUnavailableError("replica killed")
        return await real_generate(call)

    engine.generate = dying  # type: ignore[method-assign]
    cfg = SessionConfig(max_new_tokens=N, failure_cooldown=2, max_retries=0)
    res = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(prompt)
    assert len(res.token_ids) == N and res.finish_reason == "length"
    assert res.n_unverified > 0 and res.cloud_failures > 0
    assert res.n_cloud + res.n_unverified == N


def test_text_mode_with_a_different_edge_tokenizer(env) -> None:  # noqa: ANN001
    client, engine, tok, http = env
    runner = FakeRunner()  # a tokenizer the cloud does not share
    cfg = SessionConfig(mode="text", strategy="speculative", draft_len=4, max_new_tokens=N)
    res = EdgeSession(runner, EntropyGate(1.0), client, cfg).generate(
        [3, 1, 4], cloud_prompt_text=PROMPT_TEXT
    )
    state = _cloud_content(http, res.cloud_session_id)
    assert state["mode"] == "text" and state["text"] == PROMPT_TEXT + res.text
    assert res.n_unverified == 0 and res.count(TokenSource.CLOUD) > 0
