"""End to end on the real stack (the shared ``xedge_stack``: router + vLLM on CPU, SmolLM2-135M): the edge
runs a degraded SmolLM2 (4 middle layers dropped) on transformers. Speculative verify reproduces the
cloud's greedy decoding token for token; a cloud that disappears mid-answer costs no tokens."""

from __future__ import annotations

import httpx
import pytest

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.result import TokenSource
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig

pytestmark = pytest.mark.vllm

N = 24
KEEP = (*range(0, 10), *range(14, 30))
QUESTION = "Name three colours of the rainbow and say which one has the longest wavelength."


@pytest.fixture(scope="module")
def runner(xedge_stack):  # noqa: ANN001, ANN201
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig

    return TransformersRunner(
        TransformersRunnerConfig(xedge_stack.model_dir, keep_layers=KEEP, num_threads=1)
    )


def _cloud_greedy(stack, prompt: list[int], n: int) -> list[int]:  # noqa: ANN001
    body = {"model": stack.served_model_name, "prompt": prompt, "max_tokens": n, "temperature": 0.0,
            "return_token_ids": True}  # fmt: skip
    r = httpx.post(f"{stack.vllm_url}/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    if choice.get("token_ids") is not None:
        return list(choice["token_ids"])
    pytest.fail("vLLM did not return token ids (return_token_ids unsupported?)")


class CutAfter(httpx.BaseTransport):
    """Forwards the first ``n`` requests to the cloud, then refuses every connection (cloud gone)."""

    def __init__(self, n: int) -> None:
        self.n, self.inner = n, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.n -= 1
        if self.n < 0:
            raise httpx.ConnectError("connection refused", request=request)
        return self.inner.handle_request(request)


def _client(stack, transport: httpx.BaseTransport | None = None) -> EdgeClient:  # noqa: ANN001
    return EdgeClient(stack.router_url, retry=RetryPolicy(max_retries=1, initial_delay_s=0.05, max_delay_s=0.1),
                      timeout=httpx.Timeout(120.0, connect=5.0), http_client=httpx.Client(transport=transport))  # fmt: skip


def test_speculative_equals_cloud_greedy(xedge_stack, runner) -> None:  # noqa: ANN001
    prompt = runner.apply_chat_template(QUESTION)
    # A generous deadline: on a loaded 2-core CI machine a verify can take seconds, and a missed deadline
    # (correctly) makes the edge keep its own token, which is not what this test is about.
    cfg = SessionConfig(strategy="speculative", draft_len=4, max_new_tokens=N, cloud_deadline_s=120.0)
    res = EdgeSession(runner, RandomGate.at_rate(1.0), _client(xedge_stack), cfg).generate(prompt)
    assert res.cloud_failures == 0, res
    want = _cloud_greedy(xedge_stack, prompt, N)
    assert res.token_ids == want[: len(res.token_ids)] and (
        len(res.token_ids) == N or res.finish_reason == "eos"
    )
    assert res.n_unverified == 0 and res.unsynced_units == 0
    # the degraded edge is sometimes wrong: the cloud corrected it, and several drafts went per round trip
    assert res.count(TokenSource.CLOUD) > 0 and res.count(TokenSource.VERIFIED) > 0
    assert res.usage.requests < len(res.token_ids)


def test_cloud_gone_mid_answer_edge_finishes_and_counts_unverified(xedge_stack, runner) -> None:  # noqa: ANN001
    prompt = runner.apply_chat_template(QUESTION)
    cfg = SessionConfig(max_new_tokens=N, failure_cooldown=4, max_retries=0, cloud_deadline_s=30.0)
    client = _client(xedge_stack, CutAfter(6))  # create + 5 escalations, then the cloud is gone
    res = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(prompt)
    assert len(res.token_ids) == N or res.finish_reason == "eos"  # never cut short
    assert res.count(TokenSource.CLOUD) == 5
    assert res.n_unverified == len(res.token_ids) - 5 > 0
    assert res.cloud_failures > 0 and res.unsynced_units > 0
    # the five cloud tokens are the cloud's greedy tokens; what follows is the edge's own
    assert res.token_ids[:5] == _cloud_greedy(xedge_stack, prompt, 5)
