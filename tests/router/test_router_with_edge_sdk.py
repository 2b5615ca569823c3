"""The edge SDK (``client_edge.EdgeSession`` + ``EdgeClient``) against this router in process, the cloud
model being the SDK tests' toy cloud model: both sides of the protocol agree, in both strategies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.protocol import SamplingSettings
from client_edge.protocol.verify_spec import XARG, VerifySpec, decode
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig
from router.app import create_app
from router.settings import RouterSettings
from tests.fakes.edge_runner import (
    CharCloudTokenizer,
    FakeRunner,
    ToyCloudEngine,
    ToyTokenizer,
    cloud_greedy,
)

PROMPT = [3, 1, 4, 1, 5, 9, 2]
N = 40


@pytest.fixture
def sdk():
    tok = ToyTokenizer()
    engine = ToyCloudEngine(block_size=4)
    app = create_app(RouterSettings(vllm_urls=["http://toy:1"], startup_timeout_s=0), engines=[engine], tokenizer=tok)
    with TestClient(app) as http:
        client = EdgeClient("http://testserver", http_client=http, retry=RetryPolicy(max_retries=0))
        yield client, engine, http


@pytest.mark.parametrize(("strategy", "gate_rate"), [("escalate", 1.0), ("escalate", 0.3), ("speculative", 1.0)])
def test_sdk_sessions_through_router_reproduce_cloud_greedy(sdk, strategy, gate_rate):
    client, engine, http = sdk
    cfg = SessionConfig(strategy=strategy, max_new_tokens=N)
    res = EdgeSession(FakeRunner(), RandomGate.at_rate(gate_rate, seed=0), client, cfg).generate(PROMPT)
    if gate_rate == 1.0:
        assert res.token_ids == cloud_greedy(PROMPT, N)
    assert res.unsynced_units == 0 and res.round_trips > 0
    # Every engine call after the prefill found the committed prefix in the cache (block size 4).
    assert res.usage.computed_tokens <= len(PROMPT) + N + 4 * res.round_trips
    sessions = http.app.state.service.store
    assert len(sessions) <= 1


def test_sdk_speculative_sampling_session_through_router(sdk):
    """A sampling cloud session (temperature 1): the SDK's greedy drafts go out as point masses and the
    router verifies them in the engine with the rejection rule; the answer completes and is synced."""
    client, engine, http = sdk
    cfg = SessionConfig(strategy="speculative", max_new_tokens=N, cloud_sampling=SamplingSettings(temperature=1.0, seed=4))
    res = EdgeSession(FakeRunner(), RandomGate.at_rate(1.0, seed=0), client, cfg).generate(PROMPT)
    specs = [(c, decode(str(dict(c.request_meta)[XARG]))) for c in engine.calls if XARG in dict(c.request_meta)]
    verify_calls = [c for c, spec in specs if isinstance(spec, VerifySpec)]
    assert verify_calls and all(c.temperature == 1.0 for c in verify_calls)
    # The toy cloud puts ~all mass on its greedy token, so sampling reproduces it.
    assert res.token_ids == cloud_greedy(PROMPT, N)
    assert res.unsynced_units == 0 and res.n_unverified == 0


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_sdk_text_mode_through_router(strategy):
    tok = CharCloudTokenizer()
    engine = ToyCloudEngine(block_size=4)
    app = create_app(RouterSettings(vllm_urls=["http://toy:1"], startup_timeout_s=0), engines=[engine], tokenizer=tok)
    with TestClient(app) as http:
        client = EdgeClient("http://testserver", http_client=http, retry=RetryPolicy(max_retries=0))
        cfg = SessionConfig(strategy=strategy, mode="text", max_new_tokens=N)
        runner = FakeRunner()
        res = EdgeSession(runner, RandomGate.at_rate(0.5, seed=1), client, cfg).generate(PROMPT)
        assert res.unsynced_units == 0 and res.round_trips > 0
        (session,) = http.app.state.service.store._sessions.values()
        # The cloud holds, as text, exactly the edge's prompt and answer; its own ids decode to it.
        assert session.content.text == runner.decode(PROMPT) + res.text
        assert tok.decode(session.content.prompt_ids(tok)) == session.content.text
        assert session.content.cloud_tokens >= len(session.content.text) - 2  # all but the holdback frozen


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_sdk_text_mode_ends_where_the_cloud_ends(strategy):
    """Text mode: the cloud's EOS has no text, so the edge learns the end from finish_reason and stops
    there (before this it kept generating locally, unverified)."""
    tok = CharCloudTokenizer()
    stop_at = len(PROMPT) + 6  # cloud context length (one token per character here) where the cloud says EOS

    engine = ToyCloudEngine(block_size=4, eos_at=stop_at)
    app = create_app(RouterSettings(vllm_urls=["http://toy:1"], startup_timeout_s=0), engines=[engine], tokenizer=tok)
    with TestClient(app) as http:
        client = EdgeClient("http://testserver", http_client=http, retry=RetryPolicy(max_retries=0))
        cfg = SessionConfig(strategy=strategy, mode="text", max_new_tokens=N)
        res = EdgeSession(FakeRunner(), RandomGate.at_rate(1.0, seed=1), client, cfg).generate(PROMPT)
    assert res.finish_reason == "eos" and res.n_unverified == 0
    assert len(res.text) <= stop_at - len(PROMPT) + 2 < N
