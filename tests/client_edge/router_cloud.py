"""The real router (``router.app.create_app``) over the toy cloud engine, served on loopback, with faults
injected between the SDK and it by an httpx transport (the network fails, not the router).

Faults (``Faults.queue``, consumed one per request): an HTTP status (answered without reaching the
router), ``"timeout"`` (nothing reaches the router), ``"commit_then_timeout"`` (the router applies the
request, the answer is lost). ``down`` refuses every connection (a killed cloud); ``down_after`` turns it
on once that many requests went through. ``before`` hooks run before a request is forwarded.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from client_edge.async_client import AsyncEdgeClient
from client_edge.client import EdgeClient
from client_edge.retry import RetryPolicy
from router.app import create_app
from router.settings import RouterSettings
from router.tokenizer import CloudTokenizer
from tests.fakes.edge_runner import CharCloudTokenizer, ToyCloudEngine, ToyTokenizer
from tests.fakes.engine import FakeEngine
from tests.fakes.loopback import serve

# Retries in tests back off for microseconds: the policy itself is tested in test_edge_retry.py.
FAST_RETRY = RetryPolicy(max_retries=2, initial_delay_s=1e-4, max_delay_s=1e-3)
_CODE = {400: "invalid_request", 404: "unknown_session", 409: "idempotency_conflict", 413: "body_too_large",
         422: "invalid_request", 429: "rate_limited"}  # fmt: skip


@dataclass
class Faults:
    queue: list[int | str | None] = field(default_factory=list)
    down: bool = False
    down_after: int | None = None
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, request_id)
    answers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, JSON) of 2xx answers
    before: list[Callable[[httpx.Request], None]] = field(default_factory=list)

    def _enter(self, request: httpx.Request) -> httpx.Response | str | None:
        body = json.loads(request.content) if request.content else {}
        self.calls.append((request.method, request.url.path, body.get("request_id")))
        if self.down_after is not None and len(self.calls) > self.down_after:
            self.down = True
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        fault = self.queue.pop(0) if self.queue else None
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if isinstance(fault, int):
            code = _CODE.get(fault, "internal")
            return httpx.Response(fault, json={"detail": {"code": code, "message": "injected"}}, request=request)
        for hook in self.before:
            hook(request)
        return fault

    def _leave(self, request: httpx.Request, response: httpx.Response, fault: str | None) -> None:
        if fault == "commit_then_timeout":
            raise httpx.ReadTimeout("answer lost", request=request)
        if response.is_success and response.content:
            self.answers.append((request.url.path, response.json()))


class FaultTransport(httpx.BaseTransport):
    def __init__(self, faults: Faults) -> None:
        self.faults, self.inner = faults, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults._enter(request)
        if isinstance(fault, httpx.Response):
            return fault
        response = self.inner.handle_request(request)
        response.read()
        self.faults._leave(request, response, fault)
        return response


class AsyncFaultTransport(httpx.AsyncBaseTransport):
    def __init__(self, faults: Faults) -> None:
        self.faults, self.inner = faults, httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults._enter(request)
        if isinstance(fault, httpx.Response):
            return fault
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.faults._leave(request, response, fault)
        return response


@dataclass
class RouterCloud:
    url: str
    engine: FakeEngine
    tok: CloudTokenizer
    faults: Faults

    @property
    def fingerprint(self) -> str:
        return self.tok.fingerprint

    def client(self, **kw: Any) -> EdgeClient:
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("seed", 0)
        return EdgeClient(self.url, http_client=httpx.Client(transport=FaultTransport(self.faults)), **kw)

    def async_client(self, **kw: Any) -> AsyncEdgeClient:
        kw.setdefault("retry", FAST_RETRY)
        return AsyncEdgeClient(self.url, http_client=httpx.AsyncClient(transport=AsyncFaultTransport(self.faults)), **kw)

    def state(self, session_id: str) -> dict[str, Any]:
        """What the router holds for a session (content included), read past the faults."""
        r = httpx.get(f"{self.url}/v1/sessions/{session_id}", params={"include_content": "true"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["state"]

    def delete(self, session_id: str) -> None:
        r = httpx.delete(f"{self.url}/v1/sessions/{session_id}", timeout=10)
        assert r.status_code == 204, r.text


@contextlib.contextmanager
def router_cloud(
    *, text_mode: bool = False, engine: FakeEngine | None = None, tok: CloudTokenizer | None = None
) -> Iterator[RouterCloud]:
    """The router on loopback over the toy cloud (``text_mode``: a cloud tokenizer the edge does not share)."""
    engine = engine if engine is not None else ToyCloudEngine()
    tok = tok if tok is not None else (CharCloudTokenizer() if text_mode else ToyTokenizer())
    settings = RouterSettings(vllm_urls=["http://toy:1"], startup_timeout_s=0)
    app = create_app(settings, engines=[engine], tokenizer=tok)
    with serve(app) as url:
        yield RouterCloud(url, engine, tok, Faults())
