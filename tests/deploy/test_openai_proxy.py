"""The router's OpenAI-compatible surface with the official `openai` client, against a fake vLLM on
loopback (the real-vLLM twin is test_deploy_vllm.py): keys (401), body limit (413), rate limit (429),
per-tenant cache_salt, streaming relay, /ready and /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from router.app import create_app
from router.operations import OperationsExtension
from router.settings import RouterSettings
from router.tenancy import tenant_cache_salt
from tests.fakes.engine import FakeEngine, FakeTokenizer, base_of
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import MODEL, make_fake_vllm

KEY_A = "sk-acme-0123456789abcdef"
KEY_B = "sk-globex-0123456789abcdef"
SECRET = "test-salt-secret"


class Env:
    def __init__(self, router_url: str, fake: object, tmp: Path) -> None:
        self.url = router_url
        self.fake = fake
        self.tmp = tmp

    def client(self, key: str | None = KEY_A) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "unused", max_retries=0, timeout=30)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


def _start(stack: ExitStack, tmp: Path, vllm_urls: list[str] | None = None, **overrides: object) -> Env:
    fake = make_fake_vllm()
    fake_url = stack.enter_context(serve(fake))
    fields: dict[str, object] = {
        "vllm_urls": vllm_urls or [fake_url],
        "startup_timeout_s": 0,
        "api_keys": f"acme:{KEY_A},globex:{KEY_B}",
        "cache_salt_secret": SECRET,
        "max_body_bytes": 8192,
        "status_dir": tmp,
    }
    fields.update(overrides)
    settings = RouterSettings(**fields)  # type: ignore[arg-type]
    tok = FakeTokenizer()
    app = create_app(
        settings,
        engines=[FakeEngine(tok.vocab_size) for _ in settings.vllm_urls],
        tokenizer=tok,
        extensions=[OperationsExtension(settings)],
    )
    return Env(stack.enter_context(serve(app)), fake, tmp)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with ExitStack() as stack:
        yield _start(stack, tmp_path)


def test_models_completions_and_chat(env: Env) -> None:
    client = env.client()
    assert [m.id for m in client.models.list().data] == [MODEL]
    done = client.completions.create(model=MODEL, prompt="a b c", max_tokens=3)
    assert done.choices[0].text == "one two three"
    assert done.usage is not None and done.usage.prompt_tokens == 3
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi there"}], max_tokens=3)
    assert chat.choices[0].message.content == "one two three"
    # The router set the tenant's salt; the key never reached vLLM's body.
    salts = {b["cache_salt"] for b in env.fake.state.bodies}
    assert salts == {tenant_cache_salt(SECRET, "acme")}


def test_streaming_is_relayed_event_by_event(env: Env) -> None:
    client = env.client()
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x y"}], max_tokens=3, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three "
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
    text = "".join(c.choices[0].text for c in client.completions.create(model=MODEL, prompt="p", stream=True))
    assert text == "one two three "
    # include_usage was counted; the second stream had no usage, so nothing more was counted.
    assert 'xedge_router_cloud_prompt_tokens_total{api="openai",kind="computed"} 2.0' in env.metrics()


def test_missing_or_wrong_key_is_401(env: Env) -> None:
    with pytest.raises(openai.AuthenticationError):
        env.client("sk-not-a-key-000000000000").models.list()
    r = httpx.post(f"{env.url}/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert r.status_code == 401 and r.json()["detail"]["code"] == "unauthorized"
    r = httpx.post(f"{env.url}/v1/completions", json={}, headers={"Authorization": f"Basic {KEY_A}"})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]["message"]
    # The edge protocol is behind the same keys.
    assert httpx.post(f"{env.url}/v1/sessions", json={}).status_code == 401
    assert env.fake.state.bodies == []
    assert 'xedge_router_errors_total{code="unauthorized"} 4.0' in env.metrics()


def test_oversized_body_is_413(env: Env) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        env.client().completions.create(model=MODEL, prompt="word " * 5000, max_tokens=1)
    assert err.value.status_code == 413
    assert env.fake.state.bodies == []
    assert 'xedge_router_errors_total{code="body_too_large"} 1.0' in env.metrics()


def test_rate_limit_per_key_is_429(tmp_path: Path) -> None:
    with ExitStack() as stack:
        env = _start(stack, tmp_path, rate_limit_rps=0.01, rate_limit_burst=2)
        a, b = env.client(KEY_A), env.client(KEY_B)
        a.models.list()
        a.models.list()
        with pytest.raises(openai.RateLimitError) as err:
            a.models.list()
        assert "retry in" in str(err.value)
        b.models.list()  # another key has its own bucket
        assert 'xedge_router_errors_total{code="rate_limited"} 1.0' in env.metrics()


def test_cache_salt_is_per_tenant_and_not_client_settable(env: Env) -> None:
    msgs = [{"role": "user", "content": "same prompt for both"}]
    for key in (KEY_A, KEY_B):
        env.client(key).chat.completions.create(model=MODEL, messages=msgs, max_tokens=1)
    salt_a, salt_b = (b["cache_salt"] for b in env.fake.state.bodies)
    assert salt_a != salt_b and salt_b == tenant_cache_salt(SECRET, "globex")
    with pytest.raises(openai.UnprocessableEntityError):
        env.client().chat.completions.create(model=MODEL, messages=msgs, max_tokens=1, extra_body={"cache_salt": salt_b})
    assert len(env.fake.state.bodies) == 2


def test_upstream_errors_pass_through(env: Env) -> None:
    with pytest.raises(openai.NotFoundError):
        env.client().completions.create(model="no-such-model", prompt="x", max_tokens=1)
    r = httpx.post(f"{env.url}/v1/completions", content=b"[1, 2]", headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 422 and "JSON object" in r.json()["detail"]["message"]
    assert 'xedge_router_errors_total{code="upstream_NotFoundError"} 1.0' in env.metrics()


def test_metrics_cover_edge_escalations_sessions_and_prefix_cache(env: Env) -> None:
    marker = {"plugin": "prefix_cache", "event": "stats", "pid": 42, "ppid": 1,
              "detail": {"policy": "lru", "evictions": 7, "block_hits": 3, "blocks_cached": 5, "num_blocks": 40,
                         "categories": {"chat": {"requests": 2, "query_tokens": 256, "hit_tokens": 128}}}}  # fmt: skip
    (env.tmp / "cloud-0").mkdir()
    (env.tmp / "cloud-0" / "prefix_cache.stats.42.json").write_text(json.dumps(marker))
    auth = {"Authorization": f"Bearer {KEY_A}"}
    tok = FakeTokenizer()
    prompt = tok.start_ids + tok.encode("the cat and the hat")
    r = httpx.post(f"{env.url}/v1/sessions", headers=auth,
                   json={"request_id": "c1", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt})  # fmt: skip
    assert r.status_code == 201, r.text
    sid = r.json()["state"]["session_id"]
    r = httpx.post(f"{env.url}/v1/sessions/{sid}/escalate", headers=auth,
                   json={"request_id": "e1", "base": base_of(prompt), "k": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    text = env.metrics()
    assert 'xedge_router_escalations_total{kind="escalate",outcome="ok"} 1.0' in text
    assert 'xedge_router_escalation_seconds_count{kind="escalate"} 1.0' in text
    assert f'xedge_router_cloud_prompt_tokens_total{{api="edge",kind="computed"}} {float(usage["computed_tokens"])}' in text
    assert "xedge_router_sessions_live 1.0" in text
    assert 'xedge_router_requests_total{method="POST",route="/v1/sessions/{session_id}/escalate",status="200"} 1.0' in text
    assert 'xedge_prefix_cache_evictions_total{pid="42",policy="lru",replica="cloud-0"} 7.0' in text
    assert 'xedge_prefix_cache_category_hit_tokens_total{category="chat",pid="42",policy="lru",replica="cloud-0"} 128.0' in text


def test_ready_reports_unreachable_replica(tmp_path: Path) -> None:
    with ExitStack() as stack:
        env = _start(stack, tmp_path)
        assert httpx.get(f"{env.url}/ready").json()["status"] == "ready"
    with ExitStack() as stack:
        dead = "http://127.0.0.1:9"  # discard port: nothing listens
        env = _start(stack, tmp_path, vllm_urls=[dead])
        r = httpx.get(f"{env.url}/ready")
        assert r.status_code == 503 and "replica 0" in r.json()["detail"]["message"]
        assert dead not in r.text  # internal URLs stay out of replies
        with pytest.raises(openai.InternalServerError) as err:
            env.client().models.list()
        assert err.value.status_code == 503
