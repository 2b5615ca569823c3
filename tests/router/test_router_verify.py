"""Speculative verify: greedy-exact against the fake engine, and the rejection rule as a pure function."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths, VerifyResponse
from client_edge.protocol.verify_spec import XARG, VerifySpec, decode
from router.speculative import greedy_accept
from tests.fakes.engine import BOS, EOS, base_of, make_app


@pytest.fixture
def env():
    app, engine, tok = make_app(max_draft=8)
    with TestClient(app) as client:
        yield client, engine, tok


def open_session(client, tok, prompt, sampling=None, **extra):
    body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt,
            **extra}
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


def test_sampling_verify_runs_the_rule_in_the_engine_from_the_prefix_cache(env):
    client, engine, tok = env
    prompt = [BOS, *(5 + i % 30 for i in range(40))]
    sid = open_session(client, tok, prompt, sampling={"temperature": 0.7, "top_p": 0.9, "seed": 3}, prefill=True)
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": base_of(prompt),
                                                               "draft_token_ids": [5, 6]})
    assert r.status_code == 422 and "draft_distributions" in r.json()["detail"]["message"]
    greedy = engine.greedy(prompt, 2)
    dists = [{greedy[0]: 1.0}, {greedy[1]: 0.5, 7: 0.5}]
    reply = verify(client, sid, prompt, greedy, draft_distributions=dists)
    assert reply.method == "rejection" and 0 <= reply.accepted <= 2
    call = engine.calls[-1]
    meta = dict(call.request_meta)
    spec = decode(str(meta[XARG]))
    assert isinstance(spec, VerifySpec) and spec.draft == tuple(greedy) and spec.stop_token == EOS
    assert dict(spec.dists[1]) == {greedy[1]: 0.5, 7: 0.5}
    # One call from the committed prefix with the session's own sampling settings: the prompt is not
    # re-scored, the prefix cache serves it (the session was prefilled when created).
    assert call.prompt_ids == tuple(prompt) and call.max_tokens == 3
    assert (call.temperature, call.top_p) == (0.7, 0.9)
    assert reply.usage.cached_tokens >= 32 and reply.usage.computed_tokens <= 16
    if reply.accepted < 2:  # a rejection: the correction is drawn from max(0, p - q), never the drafted token
        assert reply.correction is not None and reply.correction.token_id != greedy[reply.accepted]


def test_sampling_verify_output_follows_the_cloud_distribution(env):
    """Through the router: point-mass draft of a likely-but-not-top token; the first emitted token (kept
    draft or correction) over many requests is distributed as the cloud's tempered, top-p'd p."""
    client, engine, tok = env
    prompt = [BOS, 9, 10]
    temperature, top_p = 1.0, 0.9
    sid = open_session(client, tok, prompt, sampling={"temperature": temperature, "top_p": top_p, "seed": 11})
    from tests.fakes.engine import _sampling_probs

    p = _sampling_probs(engine.logprobs(prompt), temperature, top_p)
    second = int(p.argsort(descending=True)[1])
    counts: Counter[int] = Counter()
    n = 400
    for i in range(n):
        reply = verify(client, sid, prompt, [second], rid=f"s{i}", draft_distributions=[{second: 1.0}])
        counts[second if reply.accepted == 1 else reply.correction.token_id] += 1
    support = [t for t in range(len(p)) if p[t] > 0]
    assert set(counts) <= set(support)
    for t in support:  # each frequency within 4.5 binomial standard deviations (+ one count) of p
        pt = float(p[t])
        assert abs(counts[t] / n - pt) <= 4.5 * math.sqrt(pt * (1 - pt) / n) + 1 / n, (t, counts[t], pt)
    assert len(counts) >= 3  # the check covers more than the draft and one correction


def test_sampling_verify_bad_distributions_are_4xx_and_leave_state(env):
    client, _, tok = env
    prompt = [BOS, 9, 10]
    sid = open_session(client, tok, prompt, sampling={"temperature": 1.0})
    url = Paths.VERIFY.format(session_id=sid)
    cases = [
        ([5], [{5: 0.5}], 422, "sums to"),
        ([5], [{6: 1.0}], 422, "no probability"),
        ([5, 6], [{5: 1.0}], 422, "rows"),
        ([5], [{5: 0.5, 10_000: 0.5}], 400, "token id 10000"),
    ]
    for draft, dists, status, words in cases:
        r = client.post(url, json={"request_id": uuid.uuid4().hex, "base": base_of(prompt), "draft_token_ids": draft,
                                   "draft_distributions": dists})
        assert r.status_code == status and words in r.text, r.text
    state = client.get(Paths.SESSION.format(session_id=sid)).json()["state"]
    assert state["committed"] == base_of(prompt)


def test_sampling_verify_refused_when_the_engine_lacks_the_processor(env):
    client, engine, tok = env
    engine.runs_verify_processor = False
    prompt = [BOS, 9, 10]
    sid = open_session(client, tok, prompt, sampling={"temperature": 1.0})
    r = client.post(Paths.VERIFY.format(session_id=sid), json={
        "request_id": "v", "base": base_of(prompt), "new_token_ids": [11], "draft_token_ids": [5],
        "draft_distributions": [{5: 1.0}]})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "unsupported", r.text
    assert "--logits-processors" in r.json()["detail"]["message"]
    state = client.get(Paths.SESSION.format(session_id=sid)).json()["state"]
    assert state["committed"] == base_of(prompt)  # the delta [11] was not committed
    engine.runs_verify_processor = True  # installed later: the probe runs again and passes
    reply = verify(client, sid, prompt, [5], draft_distributions=[{5: 1.0}], rid="v2")
    assert reply.method == "rejection"


def test_greedy_accept_unit():
    assert greedy_accept([1, 2, 3], [1, 2, 4, 5]).__dict__ == {"accepted": 2, "correction": 4}
    assert greedy_accept([1, 2], [1, 2, 9]).__dict__ == {"accepted": 2, "correction": 9}
    assert greedy_accept([1, 2], [1]).__dict__ == {"accepted": 1, "correction": None}
