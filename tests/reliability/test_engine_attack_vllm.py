"""Issue 16, finding 1, against a real vLLM on CPU (the shared ``xedge_stack``, verify processor loaded):
the request that used to kill vLLM's EngineCore for every tenant (a forced token id far outside the
vocabulary through ``vllm_xargs``) is refused by the router, and sent straight to vLLM's local port it
is dropped by the verify processor while the engine keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from server.launch.vllm_cmd import vllm_auth_headers

pytestmark = pytest.mark.vllm

ATTACK = json.dumps({"v": 1, "force": [99999999]})


def _completion(stack, **extra) -> dict:  # noqa: ANN001
    return {"model": stack.served_model_name, "prompt": "The capital of France is", "max_tokens": 3,
            "temperature": 0.0, **extra}  # fmt: skip


def test_out_of_vocabulary_forced_token_no_longer_kills_the_engine(xedge_stack) -> None:  # noqa: ANN001
    stack = xedge_stack
    direct = vllm_auth_headers(stack.settings)
    with httpx.Client(timeout=120) as http:
        before = http.post(f"{stack.router_url}/v1/completions", json=_completion(stack))
        assert before.status_code == 200, before.text

        refused = http.post(f"{stack.router_url}/v1/completions", json=_completion(stack, vllm_xargs={"xedge_verify": ATTACK}))
        assert refused.status_code == 422 and "reserved for the router" in refused.text

        # A local process at vLLM's own port (with its key): the processor drops the spec instead of indexing
        # the logits with it; the request runs as a plain greedy completion.
        raw = http.post(f"{stack.vllm_url}/v1/completions", headers=direct, json=_completion(stack, vllm_xargs={"xedge_verify": ATTACK}))
        assert raw.status_code == 200, raw.text
        assert raw.json()["choices"][0]["text"] == before.json()["choices"][0]["text"]
        loose = http.post(f"{stack.vllm_url}/v1/completions", headers=direct,
                          json=_completion(stack, vllm_xargs={"xedge_verify": '{"v":1,"force":["5"]}'}))  # fmt: skip
        assert loose.status_code == 400, loose.text

        for _ in range(3):  # every tenant is still served
            after = http.post(f"{stack.router_url}/v1/completions", json=_completion(stack))
            assert after.status_code == 200, after.text
        assert http.get(f"{stack.vllm_url}/health", headers=direct).status_code == 200
