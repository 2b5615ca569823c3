"""What vLLM would refuse is refused by the router first, as a clear 4xx that leaves the session as it was:
no request of one tenant may reach the engine with arguments vLLM answers with an error (a 502)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths, SamplingSettings
from router.app import create_app
from router.engine.base import EngineError, GenerateCall, GenerateResult, ModelInfo
from router.errors import RouterError
from router.session_engine import SessionEngine
from router.sessions.store import Session
from router.settings import RouterSettings
from tests.fakes.engine import FakeEngine, FakeTokenizer, text_base_of

ZWSP = "\u200b"


class DroppingTokenizer(FakeTokenizer):
    """Drops zero-width spaces, as tokenizers whose normaliser strips such characters do: a non-empty
    text can then be 0 tokens."""

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids, offs = super().encode_with_offsets(text)
        kept = [(i, o) for i, o in zip(ids, offs, strict=True) if text[o[0] : o[1]] != ZWSP]
        return [i for i, _ in kept], [o for _, o in kept]


class StrictEngine(FakeEngine):
    """The fake engine with vLLM's refusals (SamplingParams._verify_args and the prompt length check)."""

    async def generate(self, call: GenerateCall) -> GenerateResult:
        if call.max_tokens < 1:
            raise EngineError(f"max_tokens must be at least 1, got {call.max_tokens}.", status=400)
        if len(call.prompt_ids) >= self.max_model_len:
            raise EngineError(f"The decoder prompt (length {len(call.prompt_ids)}) plus ... is longer", status=400)
        if not 0.0 < call.top_p <= 1.0 or not 0.0 <= call.temperature <= 2.0:
            raise EngineError("sampling out of range", status=400)
        return await super().generate(call)


MAX_LEN = 16


@pytest.fixture
def env():
    tok = DroppingTokenizer()
    engine = StrictEngine(tok.vocab_size, max_model_len=MAX_LEN)
    app = create_app(RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0), engines=[engine], tokenizer=tok)
    with TestClient(app) as client:
        yield client, engine, tok


def test_text_verify_of_a_zero_token_draft_in_a_full_context_is_a_4xx(env):
    """Before: the draft tokenised to 0 tokens, check_room(L, 0) passed and vLLM got max_tokens=0 (a 502)."""
    client, engine, tok = env
    prompt = "abcdefghijklmno"  # BOS + 15 one-letter tokens: the context is exactly full
    assert len([*tok.start_ids, *tok.encode(prompt)]) == MAX_LEN and tok.encode(ZWSP) == []
    r = client.post(Paths.SESSIONS, json={"request_id": "c", "mode": "text", "tokenizer_fingerprint": "x",
                                          "prompt_text": prompt})
    assert r.status_code == 201, r.text
    sid = r.json()["state"]["session_id"]
    before = client.get(Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": text_base_of(prompt),
                                                               "draft_text": ZWSP})
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["code"] == "context_overflow" and "verify" in r.json()["detail"]["message"]
    assert engine.calls == []
    assert client.get(Paths.SESSION.format(session_id=sid), params={"include_content": True}).json() == before


def test_text_verify_of_a_zero_token_draft_with_room_succeeds(env):
    client, engine, _ = env
    prompt = "abcdefghijklm"  # two tokens of room
    sid = client.post(Paths.SESSIONS, json={"request_id": "c", "mode": "text", "tokenizer_fingerprint": "x",
                                            "prompt_text": prompt}).json()["state"]["session_id"]
    r = client.post(Paths.VERIFY.format(session_id=sid), json={"request_id": "v", "base": text_base_of(prompt),
                                                               "draft_text": ZWSP})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 0 and [c.max_tokens for c in engine.calls] == [1]


@pytest.mark.parametrize(
    ("prompt_len", "max_tokens", "code"),
    [(4, 0, "out_of_range"), (4, -1, "out_of_range"), (MAX_LEN, 0, "context_overflow"),
     (MAX_LEN, 1, "context_overflow"), (MAX_LEN - 2, 3, "context_overflow")],
)  # fmt: skip
def test_engine_call_vllm_would_refuse_is_refused_before_the_engine(prompt_len: int, max_tokens: int, code: str) -> None:
    """The last line of defence: whatever a route computes, SessionEngine.generate never sends vLLM a
    max_tokens below 1 or a prompt + max_tokens beyond the context."""
    tok = FakeTokenizer()
    engine = StrictEngine(tok.vocab_size, max_model_len=MAX_LEN)
    settings = RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0)
    svc = SessionEngine(settings, [engine], tok, ModelInfo(name="m", root="/m", max_model_len=MAX_LEN))
    session = Session(id="s", tenant="t", mode="token", sampling=SamplingSettings(), replica=0, content=None,  # type: ignore[arg-type]
                      max_model_len=MAX_LEN)  # fmt: skip
    with pytest.raises(RouterError) as caught:
        asyncio.run(svc.generate(session, [5] * prompt_len, max_tokens))
    assert caught.value.code == code and caught.value.status == 400
    assert engine.calls == []


def test_max_temperature_cannot_exceed_what_vllm_accepts() -> None:
    """vLLM refuses temperature > 2: a router configured to allow more would 502 every such session."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_temperature"):
        RouterSettings(max_temperature=3.0)
    assert RouterSettings(max_temperature=2.0).max_temperature == 2.0
