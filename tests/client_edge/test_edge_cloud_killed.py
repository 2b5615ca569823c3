"""End to end: the cloud's vLLM process is killed (SIGKILL, whole process group) in the middle of an answer.

Its own stack (router + vLLM on CPU, SmolLM2-135M, small settings), not the shared ``xedge_stack``: the test
kills that vLLM, which other tests still need. The edge runs the degraded SmolLM2 (4 middle layers dropped)
and asks the cloud at every token. After five cloud tokens the vLLM process group is killed; then

- the answer still runs to ``max_new_tokens`` / EOS; every token after the kill is the edge's own, marked
  UNVERIFIED and counted (``n_unverified``);
- nothing committed before the kill is lost: the five cloud tokens are the cloud's greedy tokens and stay
  at the head of the answer, and the router's session still holds exactly the prompt + the first four (the
  fifth is sent with the next request, which finds vLLM dead: it is counted in ``unsynced_units``);
- the router answers each escalation after the kill with a typed 503 ``engine_unavailable`` within the
  deadline (no hang), and ``/ready`` reports the replica as not healthy.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import httpx
import pytest

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.result import TokenSource
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig
from tests.vllm_utils import start_stack

pytestmark = pytest.mark.vllm

N = 24
BEFORE_KILL = 6  # create (with prefill) + 5 escalations reach the live cloud
DEADLINE_S = 20.0
KEEP = (*range(0, 10), *range(14, 30))
QUESTION = "Name three colours of the rainbow and say which one has the longest wavelength."


@dataclass
class Answer:
    path: str
    status: int
    code: str | None
    seconds: float


@dataclass
class KillVLLMBefore(httpx.BaseTransport):
    """Forwards every request to the router; before the request number ``n + 1`` it kills vLLM, and it
    records the router's answers from then on."""

    n: int
    vllm_pid: int
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    sent: int = 0
    killed_at: float | None = None
    after_kill: list[Answer] = field(default_factory=list)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == self.n + 1:
            os.killpg(self.vllm_pid, signal.SIGKILL)  # the stack started vLLM in its own process group
            self.killed_at = time.monotonic()
        t0 = time.monotonic()
        response = self.inner.handle_request(request)
        if self.killed_at is not None:
            response.read()
            code = response.json().get("detail", {}).get("code") if response.status_code >= 400 else None
            self.after_kill.append(
                Answer(request.url.path, response.status_code, code, time.monotonic() - t0)
            )
        return response


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    # Smallest settings that serve this test: a 0.25 GiB KV cache, 1k context, 32-token blocks.
    with start_stack(
        tmp_path_factory.mktemp("killed-stack"), kv_cache_gib=0.25, max_model_len=1024, block_size=32,
        vllm_args=("--max-num-seqs", "4", "--max-num-batched-tokens", "1024"),
    ) as s:  # fmt: skip
        yield s


def _cloud_greedy(stack, prompt: list[int], n: int) -> list[int]:  # noqa: ANN001
    body = {"model": stack.served_model_name, "prompt": prompt, "max_tokens": n, "temperature": 0.0,
            "return_token_ids": True}  # fmt: skip
    r = httpx.post(f"{stack.vllm_url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return list(r.json()["choices"][0]["token_ids"])


def test_vllm_killed_mid_answer_edge_finishes_and_counts_unverified(stack) -> None:  # noqa: ANN001
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig

    runner = TransformersRunner(TransformersRunnerConfig(stack.model_dir, keep_layers=KEEP, num_threads=1))
    prompt = runner.apply_chat_template(QUESTION)
    want = _cloud_greedy(stack, prompt, 5)  # the reference, while the cloud lives

    transport = KillVLLMBefore(BEFORE_KILL, stack.vllm.pid)
    client = EdgeClient(stack.router_url, retry=RetryPolicy(max_retries=0),
                        timeout=httpx.Timeout(120.0, connect=5.0), http_client=httpx.Client(transport=transport))  # fmt: skip
    cfg = SessionConfig(max_new_tokens=N, failure_cooldown=4, max_retries=0, cloud_deadline_s=DEADLINE_S)
    res = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(prompt)

    # vLLM really died during the answer.
    assert transport.killed_at is not None
    assert stack.vllm.poll() is not None, "vLLM still running after SIGKILL"

    # The answer was not cut short; everything after the kill is the edge's own, marked and counted.
    assert len(res.token_ids) == N or res.finish_reason == "eos"
    assert res.sources[:5] == [TokenSource.CLOUD] * 5
    assert res.sources[5:] == [TokenSource.UNVERIFIED] * (len(res.token_ids) - 5)
    assert res.n_unverified == len(res.token_ids) - 5 > 0
    # The cloud's reply to an escalation reaches the router's session with the next request, so the fifth
    # cloud token is unsynced too: the request that would have carried it failed.
    assert res.cloud_failures > 0 and res.unsynced_units == res.n_unverified + 1

    # Nothing committed before the kill is lost, on the edge or in the router's session.
    assert res.token_ids[:5] == want
    state = (
        EdgeClient(stack.router_url, retry=RetryPolicy(max_retries=0))
        .get_session(res.cloud_session_id, include_content=True)
        .state
    )
    assert state.token_ids == prompt + want[:4]

    # The router answered each request after the kill with a typed error, fast: it did not hang.
    assert transport.after_kill, "no request reached the router after the kill"
    for answer in transport.after_kill:
        assert (answer.status, answer.code) == (503, "engine_unavailable"), answer
        assert answer.seconds < DEADLINE_S, answer
    # The edge tried again after each cooldown and failed each time (one failure per attempt).
    assert res.cloud_failures == len(transport.after_kill)

    ready = httpx.get(f"{stack.router_url}/ready", timeout=30)
    assert ready.status_code == 503
    assert [r["healthy"] for r in ready.json()["replicas"]] == [False]
