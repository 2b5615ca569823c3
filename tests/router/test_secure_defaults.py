"""Issue 16, findings 5-7: secure defaults and malformed input. Each test fails on the code before it:
4xx (not 500) for lone surrogates, deep JSON and loose types; keys before bodies; ops paths behind keys;
throttled failed authentication; Retry-After / WWW-Authenticate; no internal URLs in replies; stalled
and abandoned bodies; random secrets; keys never echoed; an OpenAPI document that says all of this."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from client_edge.protocol import Paths
from router.app import create_app
from router.engine.base import EngineUnavailableError
from router.operations import OperationsExtension
from router.settings import RouterSettings
from tests.fakes.engine import BOS, FakeEngine, FakeTokenizer, base_of, make_app
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import MODEL, make_fake_vllm

KEY = "sk-acme-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = [BOS, 5, 6, 7]


def _keyed(stack: ExitStack, **overrides: object) -> tuple[str, FakeEngine, object]:
    fake_url = stack.enter_context(serve(make_fake_vllm()))
    settings = RouterSettings(vllm_urls=[fake_url], startup_timeout_s=0, api_keys=f"acme:{KEY}", **overrides)  # type: ignore[arg-type]
    tok = FakeTokenizer()
    engine = FakeEngine(tok.vocab_size)
    app = create_app(settings, engines=[engine], tokenizer=tok, extensions=[OperationsExtension(settings)])
    return stack.enter_context(serve(app)), engine, app


@pytest.fixture
def keyed() -> Iterator[tuple[str, FakeEngine, object]]:
    with ExitStack() as stack:
        yield _keyed(stack)


def _create_body(tok: FakeTokenizer, **extra: object) -> dict:
    return {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT, **extra}


# -- malformed input -------------------------------------------------------------------------------


def test_lone_surrogate_is_422_and_the_connection_lives() -> None:
    app, _, tok = make_app()
    with ExitStack() as stack:
        url = stack.enter_context(serve(app))
        with httpx.Client(base_url=url) as client:  # one keep-alive connection
            raw = '{"request_id":"s1","mode":"text","tokenizer_fingerprint":"x","prompt_text":"a\\ud800b"}'
            r = client.post(Paths.SESSIONS, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422 and "surrogate" in r.json()["detail"]["message"]
            assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"new_token_ids": ["5"]},
        {"new_token_ids": [True]},
        {"new_token_ids": [5.0]},
        {"prefill": "true"},
    ],
)
def test_loose_types_are_refused(body: dict) -> None:
    app, _, tok = make_app()
    with TestClient(app) as client:
        sid = client.post(Paths.SESSIONS, json=_create_body(tok)).json()["state"]["session_id"]
        r = client.post(Paths.SYNC.format(session_id=sid), json={"request_id": "x", "base": base_of(PROMPT), **body})
        assert r.status_code == 422, r.text


def test_openai_routes_refuse_deep_json_and_string_stream(keyed) -> None:
    url, _, _ = keyed
    deep = b'{"model":"m","prompt":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(f"{url}/v1/completions", content=deep, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code in (413, 422), r.text  # a 200 kB body is within the limit of 1 MiB: 422
    assert r.status_code == 422 and "deeply" in r.json()["detail"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "a", "stream": "true"}, headers=AUTH)
    assert r.status_code == 422 and "stream" in r.json()["detail"]["message"]


# -- authentication --------------------------------------------------------------------------------


def test_401_says_how_to_authenticate_and_429_when_to_retry() -> None:
    with ExitStack() as stack:
        url, _, _ = _keyed(stack, rate_limit_rps=0.01, rate_limit_burst=1)
        r = httpx.get(f"{url}/v1/models")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert httpx.get(f"{url}/v1/models", headers=AUTH).status_code == 200
        r = httpx.get(f"{url}/v1/models", headers=AUTH)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_keyless_request_is_refused_before_its_body_is_read(keyed) -> None:
    url, _, _ = keyed
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"a\":")  # fmt: skip
        t0 = time.monotonic()
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 401"), reply[:100]
        assert time.monotonic() - t0 < 5  # answered at once, not after the body (which never comes)


def test_ops_paths_need_a_key_except_from_loopback(keyed) -> None:
    url, _, app = keyed
    for path in ("/metrics", "/ready", "/openapi.json", "/docs"):
        assert httpx.get(f"{url}{path}").status_code == 200, path  # loopback: the operator, a healthcheck
    with TestClient(app) as client:  # TestClient's client address is "testclient": not loopback
        for path in ("/metrics", "/ready", "/openapi.json", "/docs", "/v1/sessions/x"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code in (200, 404), path
        assert client.get("/health").status_code == 200  # open paths (configurable)


def test_failed_authentication_is_throttled_per_address() -> None:
    with ExitStack() as stack:
        _, _, app = _keyed(stack, auth_failure_burst=5, auth_failure_rps=0.01)
        with TestClient(app) as client:
            codes = [client.get("/v1/models", headers={"Authorization": f"Bearer sk-guess-{i:016d}"}).status_code
                     for i in range(7)]  # fmt: skip
            assert codes == [401] * 5 + [429] * 2
            r = client.get("/v1/models", headers=AUTH)  # even the right key, until the bucket refills
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_replies_carry_no_internal_urls() -> None:
    internal = "http://10.1.2.3:8000"
    tok = FakeTokenizer()
    engine = FakeEngine(tok.vocab_size)
    settings = RouterSettings(vllm_urls=[internal], startup_timeout_s=0)
    app = create_app(settings, engines=[engine], tokenizer=tok)
    with TestClient(app) as client:
        engine.fail_with = EngineUnavailableError(f"vLLM at {internal} unreachable on /v1/completions: ConnectError()")
        r = client.post(Paths.SESSIONS, json=_create_body(tok, prefill=True))
        assert r.status_code == 503 and "10.1.2.3" not in r.text and "replica 0" in r.text
        assert int(r.headers["Retry-After"]) >= 1


# -- bodies ----------------------------------------------------------------------------------------


def test_stalled_body_gets_408_and_abandoned_body_is_never_executed() -> None:
    app, engine, tok = make_app(body_timeout_s=0.5)
    with ExitStack() as stack:
        url = stack.enter_context(serve(app))
        host, port = url.removeprefix("http://").split(":")
        head = b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head + b'{"request_id":')
            assert sock.recv(4096).startswith(b"HTTP/1.1 408")
        body = _create_body(tok)
        import json

        raw = json.dumps(body).encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:  # the body stops short, then the client leaves
            sock.sendall(head.replace(b"5000", str(len(raw) + 10).encode()) + raw)
        time.sleep(0.5)  # let the server notice the disconnect (no reply to wait for)
        assert len(app.state.service.store) == 0 and engine.calls == []


# -- secrets and settings --------------------------------------------------------------------------


def test_cache_salt_secret_is_random_unless_configured_and_never_printed() -> None:
    a, b = RouterSettings(), RouterSettings()
    assert a.cache_salt_secret != b.cache_salt_secret and len(a.cache_salt_secret) >= 32
    assert "xedge-dev-salt" not in (a.cache_salt_secret, b.cache_salt_secret)
    assert a.cache_salt_secret not in repr(a)
    assert RouterSettings(cache_salt_secret="configured-secret").cache_salt_secret == "configured-secret"


def test_malformed_key_list_is_not_echoed() -> None:
    secret = "sk-verysecret-0123456789"
    for spec in (secret, f"{secret}:acme", f"acme:{secret} x"):
        with pytest.raises(ValidationError) as err:
            RouterSettings(api_keys=spec)
        assert "verysecret" not in str(err.value), spec


def test_openapi_describes_errors_limits_and_security(keyed) -> None:
    url, _, _ = keyed
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "Limits:" in spec["info"]["description"] and "1048576 bytes" in spec["info"]["description"]
    escalate = spec["paths"][Paths.ESCALATE]["post"]["responses"]
    for status in ("401", "408", "413", "422", "429", "503"):
        assert escalate[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse"), status
    assert "Retry-After" in escalate["429"]["headers"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["paths"]["/health"]["get"]["security"] == []


def test_made_up_methods_do_not_grow_metrics_series(keyed) -> None:
    _, _, app = keyed
    with TestClient(app) as client:  # ASGI directly: uvicorn's parser would already refuse these methods
        for i in range(30):
            client.request(f"X{i}METHOD", "/v1/models", headers=AUTH)
        text = client.get("/metrics", headers=AUTH).text
    assert "X0METHOD" not in text and 'method="OTHER"' in text
