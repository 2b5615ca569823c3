"""Speculative verify: greedy-exact against the fake engine, and the rejection rule as a pure function."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths, VerifyResponse
from router.speculative import greedy_accept, rejection_accept
from tests.router.router_fakes import BOS, base_of, make_app


@pytest.fixture
def env():
    app, engine, tok = make_app(max_draft=8)
    with TestClient(app) as client:
        yield client, engine, tok


def open_session(client, tok, prompt, sampling=None):
    body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt}
    if sampling:
        body["sampling"] = sampling
    return client.post(Paths.SESSIONS, json=body).json()["state"]["session_id"]


def verify(client, sid, committed, draft, rid="v", **extra):
    body = {"request_id": rid, "base": base_of(committed), "draft_token_ids": draft, **extra}
    r = client.post(Paths.VERIFY.format(session_id=sid), json=body)
    assert r.status_code == 200, r.text
    return VerifyResponse.model_validate(r.json())


@pytest.mark.parametrize("wrong_at", [0, 2, 5, None])
def test_greedy_verify_accepts_longest_matching_prefix(env, wrong_at):
    client, engine, tok = env
    prompt = [BOS, 9, 10, 11]
    sid = open_session(client, tok, prompt)
    greedy = engine.greedy(prompt, 7)
    assert len(greedy) == 7, "toy model hit EOS; pick another prompt"
    draft = greedy[:6]
    if wrong_at is not None:
        draft[wrong_at] = (draft[wrong_at] + 1) % tok.vocab_size or 3
    reply = verify(client, sid, prompt, draft)
    n = 6 if wrong_at is None else wrong_at
    assert reply.accepted == n
    assert reply.correction is not None and reply.correction.token_id == greedy[n]
    assert reply.method == "greedy"


def test_speculative_loop_equals_greedy_decoding(env):
    """Draft with a noisy drafter, verify, keep accepted + correction: the result is the cloud's greedy
    decoding token for token."""
    client, engine, tok = env
    prompt = [BOS, 12, 13]
    sid = open_session(client, tok, prompt)
    rng = random.Random(0)
    committed, pending, out = list(prompt), [], []
    for step in range(20):
        truth = engine.greedy(prompt + out, 4)
        draft = [t if rng.random() < 0.7 else 3 + rng.randrange(20) for t in truth]
        reply = verify(client, sid, committed, draft, rid=f"v{step}", new_token_ids=pending)
        committed += pending
        if reply.correction is None:  # the cloud ended the sequence inside the accepted draft
            out += draft[: reply.accepted]
            break
        pending = draft[: reply.accepted] + [reply.correction.token_id]
        out += pending
        if reply.correction.token_id == 1 or len(out) >= 30:
            break
    want = engine.greedy(prompt, len(out))
    assert len(out) >= 10
    assert out == want
    assert len(client.app.state.service.store) == 1


def test_draft_too_long_is_rejected(env):
    client, _, tok = env
    sid = open_session(client, tok, [BOS, 5])
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": base_of([BOS, 5]),
                                                               "draft_token_ids": [5] * 9})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "out_of_range"


def test_sampling_verify_uses_rejection_rule(env):
    client, engine, tok = env
    prompt = [BOS, 9, 10]
    sid = open_session(client, tok, prompt, sampling={"temperature": 1.0, "seed": 3})
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": base_of(prompt),
                                                               "draft_token_ids": [5, 6]})
    assert r.status_code == 422 and "draft_logprobs" in r.json()["detail"]["message"]
    greedy = engine.greedy(prompt, 2)
    reply = verify(client, sid, prompt, greedy, draft_logprobs=[0.0, 0.0])
    assert reply.method == "rejection" and 0 <= reply.accepted <= 2
    assert engine.calls[-1].prompt_logprobs is not None
    sid2 = open_session(client, tok, prompt, sampling={"temperature": 0.7})
    r = client.post(Paths.VERIFY.format(session_id=sid2), json={"request_id": "v2", "base": base_of(prompt),
                                                                "draft_token_ids": [5], "draft_logprobs": [0.0]})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "unsupported"


def test_greedy_accept_unit():
    assert greedy_accept([1, 2, 3], [1, 2, 4, 5]).__dict__ == {"accepted": 2, "correction": 4}
    assert greedy_accept([1, 2], [1, 2, 9]).__dict__ == {"accepted": 2, "correction": 9}
    assert greedy_accept([1, 2], [1]).__dict__ == {"accepted": 1, "correction": None}


def test_rejection_rule_samples_from_cloud_distribution():
    """With a point-mass drafter (q(d) = 1) the rule must output exactly the cloud distribution p."""
    p = {0: 0.5, 1: 0.3, 2: 0.2}
    row = {t: math.log(v) for t, v in p.items()}
    rng = random.Random(7)
    n = 20_000
    counts: Counter[int] = Counter()
    for _ in range(n):
        acc = rejection_accept([1], [0.0], [row], rng)
        counts[1 if acc.correction is None else acc.correction] += 1
    for tok, prob in p.items():
        assert abs(counts[tok] / n - prob) < 0.015, (tok, counts)


def test_rejection_accepts_when_cloud_likes_draft_more():
    row = {4: math.log(0.9), 5: math.log(0.1)}
    rng = random.Random(1)
    assert all(rejection_accept([4], [math.log(0.5)], [row], rng).correction is None for _ in range(200))
    with pytest.raises(ValueError, match="lacks the drafted token"):
        rejection_accept([7], [0.0], [row], rng)
