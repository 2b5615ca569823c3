"""Issue 16, must-have 4: a cross-tenant matrix over every route. With API keys, tenant B holding a
valid key of its own tries every session route on tenant A's session (with and without a forged
X-Xedge-Tenant header): each answer is exactly the answer for a session that does not exist, and A's
session is unchanged. On the OpenAI routes B cannot pick a cache salt or a router-owned extra arg."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack

import httpx
import pytest

from client_edge.protocol import Paths
from router.app import create_app
from router.operations import OperationsExtension
from router.settings import RouterSettings
from router.tenancy import tenant_cache_salt
from tests.fakes.engine import BOS, FakeEngine, FakeTokenizer, base_of
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import MODEL, make_fake_vllm

KEY_A, KEY_B = "sk-tenant-a-0123456789", "sk-tenant-b-0123456789"
PROMPT = [BOS, 5, 6, 7]
MISSING = "s_" + "0" * 32


def _routes(sid: str) -> list[tuple[str, str, dict | None]]:
    base = base_of(PROMPT)
    return [
        ("GET", Paths.SESSION.format(session_id=sid), None),
        ("GET", Paths.SESSION.format(session_id=sid) + "?include_content=true", None),
        ("POST", Paths.SYNC.format(session_id=sid), {"request_id": "x1", "base": base, "new_token_ids": [5]}),
        ("POST", Paths.ESCALATE.format(session_id=sid), {"request_id": "x2", "base": base, "k": 2}),
        ("POST", Paths.VERIFY.format(session_id=sid), {"request_id": "x3", "base": base, "draft_token_ids": [5]}),
        ("POST", Paths.TRUNCATE.format(session_id=sid), {"request_id": "x4", "length": 1}),
        ("DELETE", Paths.SESSION.format(session_id=sid), None),
    ]


@pytest.fixture
def router():  # noqa: ANN201
    with ExitStack() as stack:
        fake = make_fake_vllm()
        fake_url = stack.enter_context(serve(fake))
        s = RouterSettings(vllm_urls=[fake_url], startup_timeout_s=0, api_keys=f"acme:{KEY_A},globex:{KEY_B}",
                           cache_salt_secret="matrix-secret-123")  # fmt: skip
        tok = FakeTokenizer()
        app = create_app(s, engines=[FakeEngine(tok.vocab_size)], tokenizer=tok, extensions=[OperationsExtension(s)])
        yield stack.enter_context(serve(app)), tok, fake


@pytest.mark.parametrize("forged_header", [False, True])
def test_every_session_route_treats_another_tenants_session_as_missing(router, forged_header: bool) -> None:
    url, tok, _ = router
    a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"})
    b_headers = {"Authorization": f"Bearer {KEY_B}", **({"X-Xedge-Tenant": "acme"} if forged_header else {})}
    b = httpx.Client(base_url=url, headers=b_headers)
    with a, b:
        body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT}
        sid = a.post(Paths.SESSIONS, json=body).json()["state"]["session_id"]
        before = a.get(Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()
        tried = 0
        for (method, path, payload), (_, missing_path, _) in zip(_routes(sid), _routes(MISSING), strict=True):
            got = b.request(method, path, json=payload)
            missing = b.request(method, missing_path, json=payload)
            assert got.status_code == missing.status_code == 404, (method, path, got.text)
            # The same answer as for a session that never existed (only the id in the message differs).
            assert got.json()["detail"]["message"].replace(sid, "ID") == missing.json()["detail"]["message"].replace(MISSING, "ID")
            assert got.json()["detail"]["code"] == "unknown_session" and "state" not in got.json()["detail"]
            tried += 1
        assert tried == len(_routes(sid))
        after = a.get(Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()
        assert after == before  # nothing B sent changed A's session
        assert a.delete(Paths.SESSION.format(session_id=sid)).status_code == 204


def test_openai_routes_keep_tenants_apart(router) -> None:
    url, _, fake = router
    for key, tenant in ((KEY_A, "acme"), (KEY_B, "globex")):
        h = {"Authorization": f"Bearer {key}", "X-Xedge-Tenant": "acme"}  # the header never picks the tenant
        r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "a b"}, headers=h)
        assert r.status_code == 200
        assert fake.state.bodies[-1]["cache_salt"] == tenant_cache_salt("matrix-secret-123", tenant)
        salt = tenant_cache_salt("matrix-secret-123", "acme")
        r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "a", "cache_salt": salt}, headers=h)
        assert r.status_code == 422
        r = httpx.post(f"{url}/v1/completions", headers=h,
                       json={"model": MODEL, "prompt": "a", "vllm_xargs": {"xedge_tenant": "acme"}})  # fmt: skip
        assert r.status_code == 422
    assert len(fake.state.bodies) == 2 and json.dumps(fake.state.bodies).count("xedge_") == 0
