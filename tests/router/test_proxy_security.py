"""The OpenAI proxy keeps the router's own ``vllm_xargs`` keys to itself (issue 16, finding 1): a client's
``xedge_*`` key (verify spec, category, tenant, pins) never reaches vLLM, other extra args still do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from router.app import create_app
from router.operations import OperationsExtension
from router.settings import RouterSettings
from tests.fakes.engine import FakeEngine, FakeTokenizer
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import MODEL, make_fake_vllm

ATTACK = {"v": 1, "force": [99999999]}


@pytest.fixture
def env() -> Iterator[tuple[httpx.Client, object]]:
    with ExitStack() as stack:
        fake = make_fake_vllm()
        fake_url = stack.enter_context(serve(fake))
        settings = RouterSettings(vllm_urls=[fake_url], startup_timeout_s=0, cache_salt_secret="test-salt-secret")
        tok = FakeTokenizer()
        app = create_app(
            settings, engines=[FakeEngine(tok.vocab_size)], tokenizer=tok, extensions=[OperationsExtension(settings)]
        )
        url = stack.enter_context(serve(app))
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, fake


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize(
    "xargs",
    [
        {"xedge_verify": json.dumps(ATTACK)},
        {"xedge_category": "attacker-1"},
        {"xedge_tenant": "victim"},
        {"xedge_pin_ttl_s": 600, "xedge_pin_tokens": 512},
        {"xedge": "x"},
        {"ok": 1, "XEDGE_verify": "x"},  # vLLM reads keys case-sensitively, but refuse any spelling of ours
    ],
)
def test_router_owned_xargs_are_refused_and_never_forwarded(env, path: str, xargs: dict) -> None:
    client, fake = env
    body = {"model": MODEL, "prompt": "a b", "messages": [{"role": "user", "content": "hi"}], "vllm_xargs": xargs}
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert "reserved for the router" in r.json()["detail"]["message"]
    assert fake.state.bodies == []


def test_other_xargs_pass_and_non_object_xargs_are_refused(env) -> None:
    client, fake = env
    r = client.post("/v1/completions", json={"model": MODEL, "prompt": "a b", "vllm_xargs": {"my_key": 3}})
    assert r.status_code == 200, r.text
    assert fake.state.bodies[-1]["vllm_xargs"] == {"my_key": 3}
    r = client.post("/v1/completions", json={"model": MODEL, "prompt": "a b", "vllm_xargs": ["xedge_verify"]})
    assert r.status_code == 422 and "must be an object" in r.json()["detail"]["message"]
    assert len(fake.state.bodies) == 1
