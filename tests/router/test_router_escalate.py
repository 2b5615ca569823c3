"""Escalation against the fake engine: the cloud's tokens, agreement, idempotent retries, and usage that
shows only the delta (plus at most one partial block) being computed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import EscalateResponse, Paths
from tests.fakes.engine import BOS, base_of, make_app


@pytest.fixture
def env():
    app, engine, tok = make_app()
    with TestClient(app) as client:
        yield client, engine, tok


def open_session(client, tok, prompt, **extra):
    body = {"request_id": "c", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt, **extra}
    r = client.post(Paths.SESSIONS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["state"]["session_id"]


def test_escalate_returns_cloud_tokens_and_agreement(env):
    client, engine, tok = env
    prompt = [BOS, 7, 8, 9]
    sid = open_session(client, tok, prompt)
    new = [10, 11]
    want = engine.greedy(prompt + new, 3)
    body = {"request_id": "e1", "base": base_of(prompt), "new_token_ids": new, "k": 3, "top_n": 2,
            "proposal_token_ids": [want[0], (want[1] + 1) % tok.vocab_size]}
    r = client.post(Paths.ESCALATE.format(session_id=sid), json=body)
    assert r.status_code == 200, r.text
    reply = EscalateResponse.model_validate(r.json())
    assert [t.token_id for t in reply.tokens] == want
    assert reply.agreed is False and reply.agreed_prefix == 1
    assert all(len(t.top_logprobs) == 2 for t in reply.tokens)
    assert reply.tokens[0].top_logprobs[0].token_id == want[0]  # greedy token is the most likely one
    assert reply.text == tok.decode(want)
    assert reply.state.committed.model_dump() == base_of(prompt + new)  # cloud tokens are not committed


def test_retry_replays_and_does_not_commit_twice(env):
    client, engine, tok = env
    prompt = [BOS, 7, 8, 9]
    sid = open_session(client, tok, prompt)
    body = {"request_id": "e1", "base": base_of(prompt), "new_token_ids": [10]}
    first = client.post(Paths.ESCALATE.format(session_id=sid), json=body)
    calls = len(engine.calls)
    again = client.post(Paths.ESCALATE.format(session_id=sid), json=body)
    assert again.status_code == 200 and again.json() == first.json()
    assert len(engine.calls) == calls  # answered from the record, not recomputed
    other = client.post(Paths.ESCALATE.format(session_id=sid), json={**body, "k": 2})
    assert other.status_code == 409 and other.json()["detail"]["code"] == "idempotency_conflict"


def test_delta_escalations_compute_only_new_tokens(env):
    """A long answer produced by alternating edge runs and escalations: after the prefill, each call
    computes at most its new tokens plus one partial block, per the engine's own usage numbers."""
    client, engine, tok = env
    block = engine.block_size
    prompt = [BOS] + [5 + (i * 7) % 30 for i in range(100)]
    r = client.post(Paths.SESSIONS, json={"request_id": "c", "tokenizer_fingerprint": tok.fingerprint,
                                          "prompt_token_ids": prompt, "prefill": True})
    sid = r.json()["state"]["session_id"]
    committed = list(prompt)
    kept: list[int] = []  # the cloud token the edge kept: it is sent (and committed) with the next delta
    total_new = 0
    for step in range(12):
        new = kept + [5 + (step * 3 + j) % 30 for j in range(1 + step % 5)]
        body = {"request_id": f"e{step}", "base": base_of(committed), "new_token_ids": new, "k": 1}
        r = client.post(Paths.ESCALATE.format(session_id=sid), json=body)
        assert r.status_code == 200, r.text
        reply = r.json()
        usage = reply["usage"]
        assert usage["prompt_tokens"] == len(committed) + len(new)
        assert usage["computed_tokens"] <= len(new) + block, (step, usage)
        assert usage["cached_tokens"] >= len(committed) - block
        committed += new
        kept = [reply["tokens"][0]["token_id"]]
        total_new += len(new)
    stateless = sum(len(prompt) + i for i in range(12))
    assert stateless > 3 * total_new  # the comparison the test is about is not trivial


def test_per_tenant_cache_salt(env):
    client, engine, tok = env
    prompt = [BOS] + list(range(5, 40))
    for tenant in ("a", "b"):
        client.post(Paths.SESSIONS, headers={"X-Xedge-Tenant": tenant}, json={
            "request_id": "c", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt, "prefill": True})
    salts = [c.cache_salt for c in engine.calls]
    assert len(salts) == 2 and salts[0] and salts[1] and salts[0] != salts[1]


def test_sessions_are_pinned_to_replicas():
    from router.app import create_app
    from router.settings import RouterSettings
    from tests.fakes.engine import FakeEngine, FakeTokenizer

    tok = FakeTokenizer()
    engines = [FakeEngine(tok.vocab_size) for _ in range(3)]
    settings = RouterSettings(vllm_urls=["http://r0:1", "http://r1:1", "http://r2:1"], startup_timeout_s=0)
    with TestClient(create_app(settings, engines=engines, tokenizer=tok)) as client:
        pinned = {}
        for i in range(30):
            prompt = [BOS, 5 + i % 20, 6]
            r = client.post(Paths.SESSIONS, json={"request_id": f"c{i}", "tokenizer_fingerprint": tok.fingerprint,
                                                  "prompt_token_ids": prompt})
            st = r.json()["state"]
            pinned[st["session_id"]] = (st["replica"], prompt)
        assert len({rep for rep, _ in pinned.values()}) == 3  # sessions spread over the replicas
        for sid, (rep, prompt) in pinned.items():
            before = [len(e.calls) for e in engines]
            r = client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "e", "base": base_of(prompt)})
            assert r.status_code == 200
            assert [len(e.calls) - b for e, b in zip(engines, before, strict=True)] == [int(i == rep) for i in range(3)]
