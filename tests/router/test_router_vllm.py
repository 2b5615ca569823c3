"""End to end: the router process in front of a real vLLM on CPU (the shared ``xedge_stack``: packaged
SmolLM2-135M, our plugins, prefix caching, prompt-token details). Asserts on vLLM's own usage numbers."""

from __future__ import annotations

import asyncio
import math
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


def _raw_top(stack, prompt: list[int], n: int = 20) -> dict[int, float]:  # noqa: ANN001
    """vLLM's raw next-token logprobs after ``prompt``: its top ``n`` ids."""
    body = {"model": stack.served_model_name, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
            "logprobs": n, "return_tokens_as_token_ids": True}
    r = httpx.post(f"{stack.vllm_url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    top = r.json()["choices"][0]["logprobs"]["top_logprobs"][0]
    return {int(k.split(":")[1]): float(v) for k, v in top.items()}


def _tempered_nucleus(raw: dict[int, float], temperature: float, top_p: float) -> dict[int, float]:
    """softmax(logits / T) then vLLM's top-p, on the top ids (the caller checks the tail is negligible)."""
    z = {t: lp / temperature for t, lp in raw.items()}
    m = max(z.values())
    w = {t: math.exp(v - m) for t, v in z.items()}
    total = sum(w.values())
    probs = sorted(((v / total, t) for t, v in w.items()))
    kept, cum = {}, 0.0
    for i, (pr, t) in enumerate(probs):  # ascending, like vLLM: drop while the mass so far <= 1 - top_p
        cum += pr
        if cum > 1 - top_p or i == len(probs) - 1:
            kept[t] = pr
    s = sum(kept.values())
    return {t: pr / s for t, pr in kept.items()}


def test_sampling_verify_follows_the_tempered_top_p_distribution(stack, router, hf_tok, block_size):  # noqa: ANN001
    """Temperature 0.7, top_p 0.9: the rule runs inside vLLM (our logits processor) from the prefix cache.
    A point-mass draft of the second most likely token, verified 48 times: every emitted first token lies in
    the nucleus computed from vLLM's own raw logprobs, and the draft is kept about as often as p says."""
    temperature, top_p = 0.7, 0.9
    fp = CloudInfo.model_validate(router.get(Paths.INFO).json()).tokenizer_fingerprint
    prompt = hf_tok.encode(PROMPT_TEXT)
    greedy = _vllm_greedy(stack, prompt, 10)
    best = None  # the position among the first greedy ones where the top token is least certain
    for i in range(len(greedy)):
        raw = _raw_top(stack, prompt + greedy[:i])
        tail = 1.0 - sum(math.exp(v) for v in raw.values())
        p = _tempered_nucleus(raw, temperature, top_p)
        if tail < 0.05 and len(p) >= 2 and (best is None or max(p.values()) < max(best[1].values())):
            best = (i, p)
    assert best is not None, "no position with a concentrated next-token distribution among the first 10"
    i, p = best
    committed = prompt + greedy[:i]
    second = sorted(p, key=p.get)[-2]
    r = router.post(Paths.SESSIONS, json={"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": fp,
                                          "prompt_token_ids": committed, "prefill": True,
                                          "sampling": {"temperature": temperature, "top_p": top_p, "seed": 5}})
    assert r.status_code == 201, r.text
    sid = r.json()["state"]["session_id"]
    url = f"{stack.router_url}{Paths.VERIFY.format(session_id=sid)}"

    async def one(client: httpx.AsyncClient, k: int) -> VerifyResponse:
        r = await client.post(url, json={"request_id": f"s{k}", "base": _bases(committed), "draft_token_ids": [second],
                                         "draft_distributions": [{str(second): 1.0}]})
        assert r.status_code == 200, r.text
        return VerifyResponse.model_validate(r.json())

    async def run_all() -> list[VerifyResponse]:
        async with httpx.AsyncClient(timeout=120) as client:
            out = []
            for start in range(0, 48, 8):  # 8 at a time: vLLM batches them (moves in the processor's batch)
                out += await asyncio.gather(*(one(client, k) for k in range(start, start + 8)))
            return out

    replies = asyncio.run(run_all())
    first = [second if rep.accepted == 1 else rep.correction.token_id for rep in replies]
    assert all(rep.method == "rejection" for rep in replies)
    assert set(first) <= set(p), (set(first) - set(p), p)  # top-p and temperature were applied
    n, kept = len(first), first.count(second)
    sd = math.sqrt(p[second] * (1 - p[second]) / n)
    assert abs(kept / n - p[second]) <= 4 * sd + 0.02, (kept, n, p[second])
    assert all(rep.usage.computed_tokens <= block_size for rep in replies)  # served from the prefix cache
    # A longer draft: the greedy tokens, then id 0 ("<|endoftext|>" mid-sentence), outside the nucleus, so
    # it is rejected for sure; the correction is never the rejected token.
    draft = [*_vllm_greedy(stack, committed, 3), 0]
    r = router.post(Paths.VERIFY.format(session_id=sid), json={
        "request_id": "long", "base": _bases(committed), "draft_token_ids": draft,
        "draft_distributions": [{str(t): 1.0} for t in draft]})
    assert r.status_code == 200, r.text
    reply = VerifyResponse.model_validate(r.json())
    assert reply.accepted < 4 and reply.correction is not None and reply.correction.token_id != draft[reply.accepted]
