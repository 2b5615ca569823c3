"""The router's own errors on the OpenAI routes read as OpenAI errors in the real ``openai`` client
(message, type, param and code), plain and streaming, while ``detail`` stays for the router's clients.
Before, the client parsed no error object (``body``, ``code``, ``type``, ``param`` all None)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from router.app import create_app
from router.operations import OperationsExtension
from router.settings import RouterSettings
from tests.fakes.engine import FakeEngine, FakeTokenizer
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import MODEL, make_fake_vllm

KEY = "sk-acme-0123456789abcdef"
CHAT = [{"role": "user", "content": "hi"}]


def _router(stack: ExitStack, vllm: FastAPI) -> str:
    settings = RouterSettings(
        vllm_urls=[stack.enter_context(serve(vllm))], startup_timeout_s=0, api_keys=f"acme:{KEY}", max_body_bytes=4096
    )
    tok = FakeTokenizer()
    app = create_app(settings, engines=[FakeEngine(tok.vocab_size)], tokenizer=tok, extensions=[OperationsExtension(settings)])
    return stack.enter_context(serve(app))


@pytest.fixture
def url() -> Iterator[str]:
    with ExitStack() as stack:
        yield _router(stack, make_fake_vllm())


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_router_refusal_reads_as_an_openai_error(url: str, stream: bool) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        _client(url).chat.completions.create(model=MODEL, messages=CHAT, stream=stream, extra_body={"cache_salt": "x"})
    e = err.value
    assert (e.type, e.param, e.code) == ("invalid_request_error", "cache_salt", "invalid_request")
    assert e.body == e.response.json()["error"]  # what the client parsed: OpenAI's error object
    assert e.body["message"].startswith("cache_salt is set by the router"), e.body
    assert e.response.json()["detail"]["code"] == "invalid_request"  # the router's own shape is kept


def test_auth_and_size_refusals_read_as_openai_errors(url: str) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        _client(url, "sk-wrong-0123456789abcdef").completions.create(model=MODEL, prompt="a")
    assert (err.value.type, err.value.code) == ("authentication_error", "unauthorized")
    assert err.value.body["message"] == "invalid API key"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as err:
        _client(url).completions.create(model=MODEL, prompt="a " * 5000)
    assert err.value.status_code == 413 and err.value.code == "body_too_large"
    assert err.value.body["message"].startswith("request body of at least")  # type: ignore[index]


def test_edge_routes_keep_the_protocol_shape(url: str) -> None:
    r = httpx.post(f"{url}/v1/sessions", json=[], headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 422 and set(r.json()) == {"detail"}


def _breaking_vllm() -> FastAPI:
    app = make_fake_vllm()

    @app.post("/v1/chat/completions")
    async def broken() -> StreamingResponse:
        async def events() -> Iterator[bytes]:  # type: ignore[misc]
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                     "choices": [{"index": 0, "delta": {"content": "one"}, "finish_reason": None}]}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            raise RuntimeError("replica died mid-stream")

        return StreamingResponse(events(), media_type="text/event-stream")

    app.router.routes.insert(0, app.router.routes.pop())  # ahead of the fake's own chat route
    return app


def test_a_broken_stream_ends_with_an_openai_error_event() -> None:
    with ExitStack() as stack:
        url = _router(stack, _breaking_vllm())
        stream = _client(url).chat.completions.create(model=MODEL, messages=CHAT, stream=True)
        got = []
        with pytest.raises(openai.APIError) as err:
            for chunk in stream:
                got.append(chunk.choices[0].delta.content)
    assert got == ["one"]
    assert (err.value.message, err.value.type, err.value.code) == (
        "the vLLM replica's stream broke", "server_error", "engine_unavailable"
    )
    assert err.value.body == {**err.value.body, "param": None}


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"1e999"])
def test_numbers_json_lacks_are_refused_before_forwarding(number: bytes) -> None:
    with ExitStack() as stack:
        fake = make_fake_vllm()
        url = _router(stack, fake)
        raw = b'{"model": "%s", "prompt": "a", "temperature": %s}' % (MODEL.encode(), number)
        headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
        r = httpx.post(f"{url}/v1/completions", content=raw, headers=headers)
        assert r.status_code == 422, r.text  # before: forwarded to vLLM as NaN / Infinity
        assert "not valid JSON" in r.json()["error"]["message"]
        assert fake.state.bodies == []
