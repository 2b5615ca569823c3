"""What vLLM answers is not trusted: a malformed 200 (bad JSON, missing keys, wrong types, no choices,
ids that are not ints, no logprobs) and a timeout or reset mid-call are the typed engine errors (502 /
503 on the edge routes), never an unhandled 500, and the session stays exactly as it was."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths
from router.app import create_app
from router.engine.base import EngineError, EngineUnavailableError, GenerateCall
from router.engine.vllm_http import VLLMHttpEngine
from router.settings import RouterSettings
from tests.fakes.engine import BOS, FakeTokenizer, base_of

URL = "http://vllm-test:8000"
PROMPT = [BOS, 5, 6, 7]


def completion(n: int) -> dict:
    """A well-formed vLLM completion of ``n`` tokens (id 5 + i), as vLLM sends it for the router's body."""
    ids = [5 + i for i in range(n)]
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "m",
        "choices": [{
            "index": 0,
            "text": "x" * n,
            "token_ids": ids,
            "logprobs": {
                "tokens": [f"token_id:{t}" for t in ids],
                "token_logprobs": [-0.5] * n,
                "top_logprobs": [{f"token_id:{t}": -0.5} for t in ids],
                "text_offset": list(range(n)),
            },
            "finish_reason": "length",
        }],
        "usage": {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": 4 + n,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }  # fmt: skip


def _mutated(fn: Callable[[dict], None]) -> Callable[[int], dict]:
    def make(n: int) -> dict:
        body = copy.deepcopy(completion(n))
        fn(body)
        return body

    return make


def _set(path: tuple, value: object) -> Callable[[int], dict]:
    def apply(body: dict) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return _mutated(apply)


def _drop(path: tuple) -> Callable[[int], dict]:
    def apply(body: dict) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return _mutated(apply)


C0 = ("choices", 0)
LP = (*C0, "logprobs")
# Each a 200 reply vLLM (or a proxy in front of it) could send that does not hold a usable completion.
MALFORMED: dict[str, Callable[[int], object]] = {
    "not_json": lambda n: b"<html>502 Bad Gateway</html>",
    "json_list": lambda n: [],
    "json_string": lambda n: "ok",
    "no_choices": _drop(("choices",)),
    "empty_choices": _set(("choices",), []),
    "choices_null": _set(("choices",), None),
    "choice_not_object": _set(("choices",), ["x"]),
    "ids_strings": _set((*C0, "token_ids"), ["5", "6"]),
    "ids_floats": _set((*C0, "token_ids"), [5.5, 6.0]),
    "ids_bools": _set((*C0, "token_ids"), [True, False]),
    "ids_negative": _set((*C0, "token_ids"), [-1, 6]),
    "ids_not_list": _set((*C0, "token_ids"), 5),
    "logprobs_missing": _drop(LP),
    "logprobs_null": _set(LP, None),
    "logprobs_not_object": _set(LP, [1, 2]),
    "token_logprobs_short": _set((*LP, "token_logprobs"), [-0.5]),
    "token_logprobs_strings": _set((*LP, "token_logprobs"), ["a", "b"]),
    "token_logprob_nan": _set((*LP, "token_logprobs"), [float("nan"), -0.5]),
    "top_logprob_inf": _set((*LP, "top_logprobs"), [{"token_id:5": float("-inf")}, {"token_id:6": -0.5}]),
    "top_logprobs_not_objects": _set((*LP, "top_logprobs"), [[1], [2]]),
    "top_logprobs_bad_key": _set((*LP, "top_logprobs"), [{"token_id:x": -0.5}, {"token_id:6": -0.5}]),
    "too_many_tokens": lambda n: completion(n + 3),
    "usage_missing": _drop(("usage",)),
    "usage_not_object": _set(("usage",), "x"),
    "usage_prompt_not_int": _set(("usage", "prompt_tokens"), "many"),
    "details_not_object": _set(("usage", "prompt_tokens_details"), "x"),
}


class Vllm:
    """httpx MockTransport playing one vLLM replica; ``reply(max_tokens)`` gives the next /v1/completions body."""

    def __init__(self) -> None:
        self.reply: Callable[[int], object] = completion
        self.error: Exception | None = None
        self.completions = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "root": "/m", "max_model_len": 64}]})
        self.completions += 1
        if self.error is not None:
            raise self.error
        body = self.reply(json.loads(request.content)["max_tokens"])
        content = body if isinstance(body, bytes) else json.dumps(body).encode()  # NaN as vLLM's json.dumps writes it
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    def engine(self) -> VLLMHttpEngine:
        engine = VLLMHttpEngine(URL, timeout_s=5.0)
        engine._client = httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(self.handler))
        return engine


def _generate(vllm: Vllm, top_n: int = 1) -> object:
    async def run() -> object:
        engine = vllm.engine()
        try:
            return await engine.generate(GenerateCall(prompt_ids=tuple(PROMPT), max_tokens=2, top_n=top_n))
        finally:
            await engine.aclose()

    return asyncio.run(run())


def test_wellformed_reply_parses() -> None:
    result = _generate(Vllm())
    assert [t.token_id for t in result.tokens] == [5, 6] and result.tokens[0].top == ((5, -0.5),)
    assert result.usage.prompt_tokens == 4 and result.finish_reason == "length"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_reply_is_an_engine_error(name: str) -> None:
    vllm = Vllm()
    vllm.reply = MALFORMED[name]
    with pytest.raises(EngineError) as caught:
        _generate(vllm)
    assert not isinstance(caught.value, EngineUnavailableError), name
    assert "malformed" in str(caught.value) or "token_id" in str(caught.value), str(caught.value)


def test_malformed_models_list_is_an_engine_error() -> None:
    for models in ({"data": []}, {"data": [{"id": "m"}]}, {"data": [{"id": "m", "max_model_len": "x"}]}, [], b"{"):

        def handler(request: httpx.Request, models: object = models) -> httpx.Response:
            if isinstance(models, bytes):
                return httpx.Response(200, content=models)
            return httpx.Response(200, json=models)

        async def run() -> None:
            engine = VLLMHttpEngine(URL, timeout_s=5.0)
            engine._client = httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(handler))
            try:
                await engine.model_info()
            finally:
                await engine.aclose()

        with pytest.raises(EngineError):
            asyncio.run(run())


@pytest.fixture
def env():
    vllm = Vllm()
    app = create_app(RouterSettings(vllm_urls=[URL], startup_timeout_s=0), engines=[vllm.engine()], tokenizer=FakeTokenizer())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, vllm


def _state(client: TestClient, sid: str) -> dict:
    return client.get(Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()["state"]


@pytest.mark.parametrize(
    "name", ["not_json", "empty_choices", "ids_strings", "logprobs_missing", "usage_missing", "token_logprob_nan"]
)
def test_malformed_reply_is_502_and_session_unchanged(env, name: str) -> None:
    client, vllm = env
    tok = FakeTokenizer()
    r = client.post(Paths.SESSIONS, json={"request_id": "c", "tokenizer_fingerprint": tok.fingerprint,
                                          "prompt_token_ids": PROMPT})
    sid = r.json()["state"]["session_id"]
    before = _state(client, sid)
    vllm.reply = MALFORMED[name]
    esc = {"request_id": "e", "base": base_of(PROMPT), "new_token_ids": [8], "k": 2}
    ver = {"request_id": "v", "base": base_of(PROMPT), "new_token_ids": [8], "draft_token_ids": [5, 6]}
    for path, body in ((Paths.ESCALATE, esc), (Paths.VERIFY, ver)):
        r = client.post(path.format(session_id=sid), json=body)
        assert r.status_code == 502, (name, path, r.text)
        assert r.json()["detail"]["code"] == "engine_error" and URL not in r.text
        assert _state(client, sid) == before
    vllm.reply = completion  # the same request id succeeds once vLLM answers properly
    r = client.post(Paths.ESCALATE.format(session_id=sid), json=esc)
    assert r.status_code == 200, r.text
    assert _state(client, sid)["token_ids"] == [*PROMPT, 8]


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout("timed out"), httpx.ReadError("[Errno 104] Connection reset by peer"),
     httpx.RemoteProtocolError("peer closed connection without sending complete message body")],
    ids=["timeout", "reset", "incomplete"],
)  # fmt: skip
def test_timeout_or_reset_mid_call_is_503_and_session_unchanged(env, error: Exception) -> None:
    client, vllm = env
    tok = FakeTokenizer()
    sid = client.post(Paths.SESSIONS, json={"request_id": "c", "tokenizer_fingerprint": tok.fingerprint,
                                            "prompt_token_ids": PROMPT}).json()["state"]["session_id"]
    before = _state(client, sid)
    vllm.error = error
    r = client.post(Paths.SYNC.format(session_id=sid), json={"request_id": "s", "base": base_of(PROMPT),
                                                             "new_token_ids": [8], "prefill": True})
    assert r.status_code == 503 and r.json()["detail"]["code"] == "engine_unavailable", r.text
    assert "Retry-After" in r.headers and _state(client, sid) == before and vllm.completions == 1
