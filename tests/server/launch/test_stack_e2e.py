"""End to end on loopback with the real stack (vLLM on CPU with our plugins + the router), as `xedge serve`
starts it: the OpenAI client works, an edge session's second escalation is served from vLLM's prefix
cache, and both plugins were active in vLLM's engine processes."""

from __future__ import annotations

import time

import httpx
import openai
import psutil
import pytest
from transformers import AutoTokenizer

from client_edge import EdgeClient, new_request_id
from client_edge.protocol import CreateSessionRequest, EscalateRequest, PrefixRef, token_prefix_hash
from client_edge.runner.transformers_runner import tokenizer_fingerprint
from server.launch import plugin_status

pytestmark = pytest.mark.vllm


def test_openai_client_completion_and_streamed_chat(xedge_stack):
    # Through the router (the public front), which proxies to the pinned vLLM replica.
    client = openai.OpenAI(base_url=f"{xedge_stack.router_url}/v1", api_key="unused", timeout=120)
    model = xedge_stack.served_model_name
    done = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert done.choices[0].text.strip(), done
    assert done.usage.completion_tokens == 8

    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello in one word."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3  # role chunk, content chunks, finish chunk: really streamed
    assert text.strip()


def test_second_escalation_is_served_from_prefix_cache(xedge_stack):
    tok = AutoTokenizer.from_pretrained(xedge_stack.model_dir)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write a long paragraph about the history of the bicycle in Europe. " * 12}],
        add_generation_prompt=True,
        return_dict=False,
    )
    assert len(prompt) > 128  # more than one vLLM CPU block (128 tokens), so a cached prefix is possible
    # Generous timeout: CI machines have 2 cores shared by vLLM, the router and the test.
    with EdgeClient(xedge_stack.router_url, timeout=httpx.Timeout(120.0, connect=5.0)) as client:
        created = client.create_session(
            CreateSessionRequest(
                request_id=new_request_id(),
                tokenizer_fingerprint=tokenizer_fingerprint(tok),
                prompt_token_ids=prompt,
            )
        )
        sid = created.state.session_id
        committed = list(prompt)
        usages = []
        pending: list[int] = []  # the cloud's tokens are not committed until the edge sends them back
        for extra in ([], tok.encode(" The first", add_special_tokens=False)):
            new = pending + extra
            base = PrefixRef(length=len(committed), hash=token_prefix_hash(committed))
            res = client.escalate(
                sid, EscalateRequest(request_id=new_request_id(), base=base, new_token_ids=new, k=1)
            )
            committed += new
            assert res.state.committed.length == len(committed)
            pending = [t.token_id for t in res.tokens]
            usages.append(res.usage)
        first, second = usages
        # vLLM's own usage numbers: the second escalation re-uses the committed prefix from the cache and
        # computes only the new tokens plus at most one partial block (128 tokens on CPU).
        assert second.cached_tokens > 0, second
        assert second.prompt_tokens == len(committed)
        new_tokens = second.prompt_tokens - first.prompt_tokens
        assert second.computed_tokens <= new_tokens + 128, (first, second)
        assert second.computed_tokens == second.prompt_tokens - second.cached_tokens

    # The router tags its engine calls (vllm_xargs) so the eviction policy in EngineCore sees the
    # session's category; the policy's stats marker is refreshed about once a second, so a marker written
    # between the two escalations may count only the first: wait for both, not for the category alone.
    deadline = time.monotonic() + 20
    categories: dict = {}
    while time.monotonic() < deadline and categories.get("edge-session", {}).get("requests", 0) < 2:
        stats = plugin_status.summary(xedge_stack.status_dir).get("prefix_cache", {}).get("stats", {})
        categories = stats.get("categories", {})
        time.sleep(0.5)
    assert categories.get("edge-session", {}).get("requests", 0) >= 2, categories


def test_both_plugins_active_in_vllm_engine_processes(xedge_stack):
    markers = {(m.plugin, m.event): m for m in plugin_status.read_markers(xedge_stack.status_dir)}
    api_server_pid = xedge_stack.vllm.pid
    block_pool = markers[("prefix_cache", "block_pool")]
    impl = markers[("attention", "impl")]
    # The BlockPool with our policy lives in EngineCore, a child of vLLM's API server process.
    assert block_pool.ppid == api_server_pid
    assert block_pool.detail["policy"] == xedge_stack.settings.prefix_cache_policy
    # Our attention impl ran in the worker: EngineCore itself or its child.
    assert impl.pid == block_pool.pid or impl.ppid == block_pool.pid
    assert impl.detail["class"].startswith("XAttention")
    engine = psutil.Process(block_pool.pid)
    assert engine.is_running() and engine.ppid() == api_server_pid
