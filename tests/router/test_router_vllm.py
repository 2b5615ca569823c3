"""End to end: the router process in front of a real vLLM on CPU (the shared ``xedge_stack``: packaged
SmolLM2-135M, our plugins, prefix caching, prompt-token details). Asserts on vLLM's own usage numbers."""

from __future__ import annotations

import random
import re
import uuid

import httpx
import pytest

from client_edge.protocol import (
    FINGERPRINT_PROBE_TEXT,
    CloudInfo,
    EscalateResponse,
    Paths,
    SessionResponse,
    VerifyResponse,
    fingerprint_probe_ids,
    text_prefix_hash,
    token_prefix_hash,
    tokenizer_fingerprint,
)

pytestmark = pytest.mark.vllm

PROMPT_TEXT = (
    "<|im_start|>user\nList the planets of the solar system in order from the Sun and say one fact about "
    "each of them, then explain why Pluto is no longer counted as a planet.<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def stack(xedge_stack):  # noqa: ANN001, ANN201
    return xedge_stack


@pytest.fixture(scope="module")
def hf_tok(stack):  # noqa: ANN001, ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(stack.model_dir))


@pytest.fixture(scope="module")
def router(stack):  # noqa: ANN001, ANN201
    with httpx.Client(base_url=stack.router_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def block_size(stack) -> int:  # noqa: ANN001
    text = httpx.get(f"{stack.vllm_url}/metrics", timeout=30).text
    found = re.search(r'cache_config_info\{[^}]*block_size="(\d+)"', text)
    assert found, "vLLM /metrics has no cache_config_info block_size"
    return int(found.group(1))


def _bases(ids: list[int]) -> dict:
    return {"length": len(ids), "hash": token_prefix_hash(ids)}


def _vllm_greedy(stack, prompt: list[int], n: int) -> list[int]:  # noqa: ANN001
    body = {"model": stack.served_model_name, "prompt": prompt, "max_tokens": n, "temperature": 0.0,
            "return_token_ids": True}
    r = httpx.post(f"{stack.vllm_url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["token_ids"]


def _open(router: httpx.Client, fingerprint: str, prompt: list[int], prefill: bool = True) -> SessionResponse:
    r = router.post(Paths.SESSIONS, json={"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": fingerprint,
                                          "prompt_token_ids": prompt, "prefill": prefill})
    assert r.status_code == 201, r.text
    return SessionResponse.model_validate(r.json())


def test_fingerprint_matches_edge_tokenizer(router, hf_tok):  # noqa: ANN001
    info = CloudInfo.model_validate(router.get(Paths.INFO).json())
    n = len(hf_tok)
    edge = tokenizer_fingerprint(
        n, hf_tok.encode(FINGERPRINT_PROBE_TEXT, add_special_tokens=False), hf_tok.decode(fingerprint_probe_ids(n))
    )
    assert info.tokenizer_fingerprint == edge and info.vocab_size == n == 49152


def test_delta_escalation_is_served_from_prefix_cache(stack, router, hf_tok, block_size):  # noqa: ANN001
    fp = CloudInfo.model_validate(router.get(Paths.INFO).json()).tokenizer_fingerprint
    prompt = hf_tok.encode(PROMPT_TEXT * 4)
    opened = _open(router, fp, prompt)
    assert opened.usage is not None and opened.usage.computed_tokens > 0
    sid = opened.state.session_id
    committed, kept = list(prompt), []
    rng = random.Random(0)
    for step in range(5):
        new = kept + [rng.randrange(300, 20_000) for _ in range(rng.randrange(1, 12))]
        r = router.post(Paths.ESCALATE.format(session_id=sid), json={
            "request_id": f"e{step}", "base": _bases(committed), "new_token_ids": new, "k": 2, "top_n": 3})
        assert r.status_code == 200, r.text
        reply = EscalateResponse.model_validate(r.json())
        u = reply.usage
        assert u.prompt_tokens == len(committed) + len(new)
        # vLLM computed only the delta plus at most one partial block; the rest came from its cache.
        assert u.computed_tokens <= len(new) + block_size, (step, u, block_size)
        assert u.cached_tokens >= len(committed) - block_size
        assert len(reply.tokens) == 2 and all(len(t.top_logprobs) == 3 for t in reply.tokens)
        committed += new
        kept = [reply.tokens[0].token_id]
    assert router.delete(Paths.SESSION.format(session_id=sid)).status_code == 204


def test_stale_base_gets_409_and_edge_resyncs(router, hf_tok):  # noqa: ANN001
    fp = CloudInfo.model_validate(router.get(Paths.INFO).json()).tokenizer_fingerprint
    prompt = hf_tok.encode(PROMPT_TEXT)
    sid = _open(router, fp, prompt, prefill=False).state.session_id
    url = Paths.ESCALATE.format(session_id=sid)
    edge = prompt + hf_tok.encode(" Mercury is", add_special_tokens=False)
    # The edge believes the cloud already holds its first 3 new tokens (say a sync timed out on its side).
    r = router.post(url, json={"request_id": "x1", "base": _bases(edge[: len(prompt) + 3]),
                               "new_token_ids": edge[len(prompt) + 3:]})
    assert r.status_code == 409
    state = r.json()["detail"]["state"]
    assert state["committed"] == _bases(prompt)
    # Resync from what the cloud says it has: its committed prefix is a prefix of the edge's.
    held = state["committed"]["length"]
    assert token_prefix_hash(edge[:held]) == state["committed"]["hash"]
    r = router.post(url, json={"request_id": "x2", "base": _bases(edge[:held]), "new_token_ids": edge[held:]})
    assert r.status_code == 200, r.text
    assert r.json()["state"]["committed"] == _bases(edge)


def test_speculative_verify_equals_greedy_cloud_decoding(stack, router, hf_tok):  # noqa: ANN001
    fp = CloudInfo.model_validate(router.get(Paths.INFO).json()).tokenizer_fingerprint
    prompt = hf_tok.encode(PROMPT_TEXT)
    want = _vllm_greedy(stack, prompt, 24)
    sid = _open(router, fp, prompt).state.session_id
    rng = random.Random(1)
    committed, pending, out, step = list(prompt), [], [], 0
    accepted_total = 0
    while len(out) < 24:
        truth = want[len(out) : len(out) + 4]
        draft = [t if rng.random() < 0.75 else rng.randrange(300, 20_000) for t in truth] or [hf_tok.eos_token_id]
        r = router.post(Paths.VERIFY.format(session_id=sid), json={
            "request_id": f"v{step}", "base": _bases(committed), "new_token_ids": pending, "draft_token_ids": draft})
        assert r.status_code == 200, r.text
        reply = VerifyResponse.model_validate(r.json())
        committed += pending
        accepted_total += reply.accepted
        assert reply.correction is not None
        pending = draft[: reply.accepted] + [reply.correction.token_id]
        out += pending
        step += 1
    assert out[:24] == want  # token for token
    assert 0 < accepted_total < len(out)  # both acceptance and correction happened


def test_text_mode_bridges_tokenizers(router, hf_tok, block_size):  # noqa: ANN001
    prompt = PROMPT_TEXT * 8  # several KV blocks, so the frozen cloud tokens can be served from the cache
    r = router.post(Paths.SESSIONS, json={"request_id": uuid.uuid4().hex, "mode": "text",
                                          "tokenizer_fingerprint": "v1:262144:some-other-tokenizer",
                                          "prompt_text": prompt, "prefill": True})
    assert r.status_code == 201, r.text
    sid = r.json()["state"]["session_id"]
    committed = prompt + "The planets"
    r = router.post(Paths.ESCALATE.format(session_id=sid), json={
        "request_id": "t1", "base": {"length": len(prompt), "hash": text_prefix_hash(prompt)},
        "new_text": "The planets", "k": 4})
    assert r.status_code == 200, r.text
    reply = EscalateResponse.model_validate(r.json())
    assert reply.state.committed.hash == text_prefix_hash(committed)
    assert reply.text and reply.text == hf_tok.decode([t.token_id for t in reply.tokens])
    # The prompt's frozen cloud tokens came from the cache: only the re-tokenised tail, the new text and
    # at most one partial block were computed.
    assert reply.usage.cached_tokens > 0
    assert reply.usage.computed_tokens <= len(hf_tok.encode(prompt[-40:] + "The planets")) + block_size


def test_sampling_verify_scores_draft_with_vllm_prompt_logprobs(stack, router, hf_tok):  # noqa: ANN001
    fp = CloudInfo.model_validate(router.get(Paths.INFO).json()).tokenizer_fingerprint
    prompt = hf_tok.encode(PROMPT_TEXT)
    want = _vllm_greedy(stack, prompt, 3)
    r = router.post(Paths.SESSIONS, json={"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": fp,
                                          "prompt_token_ids": prompt, "sampling": {"temperature": 1.0, "seed": 5}})
    sid = r.json()["state"]["session_id"]
    # A point-mass drafter (log q = 0) proposing the greedy tokens and then a token the model never
    # wants (id 0, "<|endoftext|>" mid-sentence): accepted with prob p each, so the junk gets rejected.
    draft = [*want, 0]
    r = router.post(Paths.VERIFY.format(session_id=sid), json={
        "request_id": "v", "base": _bases(prompt), "draft_token_ids": draft, "draft_logprobs": [0.0] * 4})
    assert r.status_code == 200, r.text
    reply = VerifyResponse.model_validate(r.json())
    assert reply.method == "rejection" and reply.accepted < 4
    assert reply.correction is not None and reply.correction.token_id != draft[reply.accepted]
    assert reply.usage.prompt_tokens == len(prompt) + len(draft)
