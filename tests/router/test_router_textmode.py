"""Text-bridged sessions: the cloud tokenises appended text itself, never changes a frozen token, and
answers with text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import EscalateResponse, Paths
from router.sessions.content import TextContent
from tests.fakes.engine import BOS, FakeTokenizer, make_app, text_base_of


@pytest.fixture
def env():
    app, engine, tok = make_app()
    with TestClient(app) as client:
        yield client, engine, tok


def test_frozen_tokens_never_change_and_tail_retokenises():
    tok = FakeTokenizer()
    # holdback 2 keeps ", th" re-tokenisable: the full text tokenises as ..., ",", " the", " ", "end".
    c = TextContent.start(tok, holdback=2).append("an apple, th", tok)
    frozen = c.ids
    assert c.ids[0] == BOS and c.text == "an apple, th"
    c2 = c.append("e end", tok)  # "th" + "e" must become the single token "the" in the re-tokenised tail
    assert c2.ids[: len(frozen)] == frozen
    assert c2.prompt_ids(tok) == [BOS, *tok.encode("an apple, the end")]
    assert tok.decode(c2.prompt_ids(tok)[1:]) == c2.text
    t = c2.truncate(5, tok)
    assert t.text == "an ap" and tok.decode(t.prompt_ids(tok)[1:]) == "an ap"
    assert all(e <= 5 for e in t.ends)


def test_text_session_escalate_and_verify(env):
    client, engine, tok = env
    prompt = "the cat and the hat"
    r = client.post(Paths.SESSIONS, json={"request_id": "c", "mode": "text", "tokenizer_fingerprint": "v1:1:other",
                                          "prompt_text": prompt})
    assert r.status_code == 201, r.text
    st = r.json()["state"]
    sid = st["session_id"]
    assert st["committed"] == text_base_of(prompt) and st["mode"] == "text"
    r = client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "e", "base": text_base_of(prompt),
                                                                 "new_text": " sat", "k": 4})
    assert r.status_code == 200, r.text
    reply = EscalateResponse.model_validate(r.json())
    cloud_prompt = [BOS, *tok.encode(prompt + " sat")]
    want = engine.greedy(cloud_prompt, 4)
    assert [t.token_id for t in reply.tokens] == want
    assert reply.text == tok.decode(want)
    committed = prompt + " sat"
    r = client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "bad", "base": text_base_of(committed),
                                                                 "new_token_ids": [5]})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "mode_mismatch"
    # Verify a text draft: the cloud's own greedy text with a wrong character in the middle.
    cloud_text = tok.decode(engine.greedy([BOS, *tok.encode(committed)], 6))
    assert len(cloud_text) >= 4
    draft = cloud_text[:2] + ("z" if cloud_text[2] != "z" else "y") + cloud_text[3:]
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": text_base_of(committed),
                                                               "draft_text": draft})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["accepted_text"] == cloud_text[:2]
    assert body["correction"]["text"].startswith(cloud_text[2])


def test_text_session_end_of_sequence_is_not_text(env):
    """The cloud's EOS adds no text (its "</s>" marker would be re-tokenised as words by the edge): escalate
    reports it through finish_reason, and a text verify whose cloud text ends inside the draft returns the
    EOS as the correction (empty text) with finish_reason "stop"."""
    from client_edge.protocol import VerifyResponse
    from tests.fakes.engine import EOS

    client, engine, tok = env
    prompt = "the cat"
    ends_after = len([BOS, *tok.encode(prompt)]) + 2  # the toy cloud says EOS after two more tokens
    base_logprobs = engine.logprobs
    engine.logprobs = lambda ctx: [0.0 if i == EOS else -50.0 for i in range(engine.vocab)] if len(ctx) >= ends_after \
        else base_logprobs(ctx)  # fmt: skip
    r = client.post(Paths.SESSIONS, json={"request_id": "c", "mode": "text", "tokenizer_fingerprint": "v1:1:other",
                                          "prompt_text": prompt})
    sid = r.json()["state"]["session_id"]
    r = client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "e", "base": text_base_of(prompt), "k": 4})
    reply = EscalateResponse.model_validate(r.json())
    assert [t.token_id for t in reply.tokens][-1] == EOS and reply.finish_reason == "stop"
    assert "</s>" not in reply.text and reply.tokens[-1].text == ""
    cloud_text = reply.text
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": text_base_of(prompt),
                                                               "draft_text": cloud_text + " and more"})
    assert r.status_code == 200, r.text
    v = VerifyResponse.model_validate(r.json())
    assert v.accepted == len(cloud_text) and v.finish_reason == "stop"
    assert v.correction is not None and v.correction.token_id == EOS and v.correction.text == ""
