"""Units of the deployment surface: token buckets, API-key parsing, SSE usage scanning, error labels."""

from __future__ import annotations

import pytest

from router.auth import KeyAuth, parse_api_keys
from router.errors import RouterError
from router.metrics import error_code
from router.proxy import SSEUsageScanner
from router.ratelimit import TokenBucketLimiter
from router.settings import RouterSettings


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_bursts_then_refills_per_key() -> None:
    clock = Clock()
    lim = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [lim.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.acquire("a") == pytest.approx(0.5)
    assert lim.acquire("b") == 0.0
    clock.t += 0.5
    assert lim.acquire("a") == 0.0
    assert lim.acquire("a") == pytest.approx(0.5)
    clock.t += 100
    assert [lim.acquire("a") for _ in range(4)][-1] > 0  # refill is capped at the burst
    with pytest.raises(ValueError, match="rate"):
        TokenBucketLimiter(rate=0, burst=1)


def test_api_keys_parse_and_reject_bad_entries() -> None:
    assert parse_api_keys(" acme:sk-aaaaaaaaaaaaaaaa , acme:sk-bbbbbbbbbbbbbbbb,") == {
        "sk-aaaaaaaaaaaaaaaa": "acme",
        "sk-bbbbbbbbbbbbbbbb": "acme",
    }
    with pytest.raises(ValueError, match="no ':'"):
        parse_api_keys("sk-aaaaaaaaaaaaaaaa")
    with pytest.raises(ValueError, match="at least 16"):
        parse_api_keys("acme:short")
    with pytest.raises(ValueError, match="entry 0: the tenant") as bad:  # by position: no key material echoed
        parse_api_keys("a b:sk-aaaaaaaaaaaaaaaa")
    assert "sk-" not in str(bad.value)
    s = RouterSettings(api_keys="t1:sk-aaaaaaaaaaaaaaaa")
    assert s.api_keys == {"sk-aaaaaaaaaaaaaaaa": "t1"}
    with pytest.raises(ValueError, match="at least 16"):
        RouterSettings(api_keys={"short": "t1"})


def test_key_auth_resolves_tenant_and_rejects() -> None:
    auth = KeyAuth({"sk-aaaaaaaaaaaaaaaa": "acme"}, None)
    assert auth.authenticate("Bearer sk-aaaaaaaaaaaaaaaa") == "acme"
    for header, needle in ((None, "missing"), ("Token x", "Bearer"), ("Bearer sk-zzzzzzzzzzzzzzzz", "invalid")):
        with pytest.raises(RouterError, match=needle) as err:
            auth.authenticate(header)
        assert err.value.status == 401


def test_sse_scanner_finds_usage_split_across_chunks() -> None:
    scanner = SSEUsageScanner()
    stream = b'data: {"choices": []}\n\ndata: {"usage": {"prompt_tokens": 5}, "choices": []}\n\ndata: [DONE]\n\n'
    for i in range(0, len(stream), 7):
        scanner.feed(stream[i : i + 7])
    assert scanner.usage == {"prompt_tokens": 5}
    empty = SSEUsageScanner()
    empty.feed(b'data: {"usage": null}\n\n')
    assert empty.usage is None


def test_error_code_labels() -> None:
    assert error_code(401, b'{"detail": {"code": "unauthorized", "message": "x"}}') == "unauthorized"
    assert error_code(400, b'{"error": {"type": "BadRequestError"}}') == "upstream_BadRequestError"
    assert error_code(400, b'{"object": "error", "type": "BadRequestError"}') == "upstream_BadRequestError"
    assert error_code(502, b"<html>") == "http_502"


def test_edge_sessions_and_openai_calls_share_one_salt_per_tenant() -> None:
    """The edge service and the OpenAI proxy must salt a tenant identically (its cache serves both APIs)."""
    from fastapi.testclient import TestClient

    from router.tenancy import tenant_cache_salt
    from tests.fakes.engine import make_app

    app, _, _ = make_app(cache_salt_secret="shared-secret-1")
    with TestClient(app):
        service = app.state.service
        assert service._salt("acme") == tenant_cache_salt("shared-secret-1", "acme")
        assert service._salt("acme") != service._salt("globex")
