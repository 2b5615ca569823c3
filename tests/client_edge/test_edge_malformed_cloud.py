"""A cloud that answers 2xx with content that breaks the protocol (a wrong committed state, more tokens than
asked, ids outside the vocabulary, more accepted than drafted, a body that cannot be decoded): the call
counts as failed, the edge keeps its own tokens, and the answer is still one coherent continuation that the
cloud ends up holding exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from client_edge import errors
from client_edge.async_client import AsyncEdgeClient
from client_edge.client import EdgeClient
from client_edge.gates.confidence import EntropyGate
from client_edge.gates.random_gate import RandomGate
from client_edge.result import GenerationResult, TokenSource
from client_edge.session import EdgeSession, SessionConfig
from tests.client_edge.router_cloud import FAST_RETRY, FaultTransport, RouterCloud, router_cloud
from tests.fakes.edge_runner import FakeRunner, V, cloud_greedy, cloud_next

PROMPT = [3, 1, 4, 1, 5, 9, 2]
N = 12
#: (path, JSON answer, how many answers on that path came before) -> the answer to deliver instead
Tamper = Callable[[str, dict[str, Any], int], dict[str, Any] | None]


class TamperTransport(httpx.BaseTransport):
    """Rewrites the router's 2xx JSON answers on their way back to the SDK."""

    def __init__(self, inner: httpx.BaseTransport, tamper: Tamper) -> None:
        self.inner, self.tamper, self.seen = inner, tamper, {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not (response.is_success and response.content):
            return response
        kind = request.url.path.rsplit("/", 1)[-1]
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        body = self.tamper(kind, response.json(), n)
        return response if body is None else httpx.Response(response.status_code, json=body, request=request)


@pytest.fixture
def cloud() -> Iterator[RouterCloud]:
    with router_cloud() as c:
        yield c


def _generate(cloud: RouterCloud, tamper: Tamper, **cfg: Any) -> GenerationResult:
    cfg = {"max_new_tokens": N, "failure_cooldown": 0, **cfg}
    http = httpx.Client(transport=TamperTransport(FaultTransport(cloud.faults), tamper))
    with http:
        client = EdgeClient(cloud.url, http_client=http, retry=FAST_RETRY)
        gate = RandomGate.at_rate(1.0) if cfg.get("strategy") != "speculative" else EntropyGate(1.0)
        return EdgeSession(FakeRunner(), gate, client, SessionConfig(**cfg)).generate(PROMPT)


def _assert_coherent(cloud: RouterCloud, res: GenerationResult) -> None:
    """Every token the cloud decided is the cloud's greedy token after what precedes it (no duplicate, no
    gap), the answer runs to the end, and the cloud holds exactly the prompt and the answer."""
    assert len(res.token_ids) == N and len(res.sources) == N
    for i, (tok, src) in enumerate(zip(res.token_ids, res.sources, strict=True)):
        if src in (TokenSource.CLOUD, TokenSource.VERIFIED):
            assert tok == cloud_next(PROMPT + res.token_ids[:i]), (i, res.token_ids, res.sources)
    assert res.unsynced_units == 0
    assert cloud.state(res.cloud_session_id)["token_ids"] == PROMPT + res.token_ids


def test_escalation_answer_with_a_wrong_committed_state_is_a_failed_call(cloud: RouterCloud) -> None:
    def tamper(kind: str, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        if kind == "escalate" and n == 2:
            body["state"]["committed"]["length"] += 1
            return body
        return None

    res = _generate(cloud, tamper)
    _assert_coherent(cloud, res)
    assert res.sources[2] is TokenSource.UNVERIFIED and res.n_unverified == 1
    assert res.cloud_failures == 1 and res.resyncs == 1  # the next call finds out what the cloud holds


def test_duplicated_escalation_tokens_are_not_committed(cloud: RouterCloud) -> None:
    def tamper(kind: str, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        if kind == "escalate" and n == 2:
            body["tokens"] = body["tokens"] * 3  # k=1 asked, the same token three times answered
            return body
        return None

    res = _generate(cloud, tamper)
    _assert_coherent(cloud, res)
    assert res.sources[2] is TokenSource.UNVERIFIED and res.n_unverified == 1 and res.cloud_failures == 1


def test_escalation_token_outside_the_vocabulary_is_not_committed(cloud: RouterCloud) -> None:
    def tamper(kind: str, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        if kind == "escalate" and n == 2:
            body["tokens"][0]["token_id"] = V + 5
            return body
        return None

    res = _generate(cloud, tamper)
    _assert_coherent(cloud, res)
    assert all(0 <= t < V for t in res.token_ids)
    assert res.sources[2] is TokenSource.UNVERIFIED and res.cloud_failures == 1


def test_verify_accepting_more_than_the_draft_is_a_failed_call(cloud: RouterCloud) -> None:
    def tamper(kind: str, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        if kind == "verify" and n == 1:
            body["accepted"] = 99
            return body
        return None

    res = _generate(cloud, tamper, strategy="speculative", draft_len=3)
    _assert_coherent(cloud, res)
    assert res.cloud_failures == 1 and res.n_unverified == 3  # that round's drafts stand, unverified


def test_created_session_with_a_wrong_committed_state_is_resynced(cloud: RouterCloud) -> None:
    def tamper(kind: str, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        if kind == "sessions":
            body["state"]["committed"]["length"] += 100
            return body
        return None

    res = _generate(cloud, tamper)
    _assert_coherent(cloud, res)
    assert res.token_ids == cloud_greedy(PROMPT, N) and res.n_unverified == 0
    assert res.cloud_failures == 1 and res.resyncs == 1


def _undecodable(request: httpx.Request) -> httpx.Response:
    # claims gzip, is not: httpx raises DecodingError, which is not a TransportError
    return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip"))


def test_undecodable_body_is_a_connection_error_and_retried_in_both_clients() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append("sync")
        return _undecodable(request)

    async def async_handler(request: httpx.Request) -> httpx.Response:
        calls.append("async")
        return _undecodable(request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        sync_client = EdgeClient("http://cloud", http_client=http, retry=FAST_RETRY)
        with pytest.raises(errors.APIConnectionError, match="DecodingError"):
            sync_client.info()

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(async_handler))
        async with AsyncEdgeClient("http://cloud", http_client=http, retry=FAST_RETRY) as c:
            with pytest.raises(errors.APIConnectionError, match="DecodingError"):
                await c.info()
        await http.aclose()

    asyncio.run(main())
    assert calls == ["sync"] * (1 + FAST_RETRY.max_retries) + ["async"] * (1 + FAST_RETRY.max_retries)
