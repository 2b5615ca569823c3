"""The OpenAI-shaped interface (``EdgeClient(...).chat.completions.create``) against the real router on
loopback: openai-python's own types, each token's source, streaming as tokens are committed, usage split
between edge and cloud, and a typed error for every field it does not implement."""

from __future__ import annotations

import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from client_edge.chat import ChatCompletionStream
from client_edge.errors import UnsupportedParameterError, XEdgeError
from client_edge.gates.confidence import EntropyGate
from client_edge.session import EdgeSession, SessionConfig
from tests.client_edge.router_cloud import RouterCloud
from tests.fakes.edge_runner import FakeRunner, cloud_greedy

N = 30
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat sat on"}]


def _client(cloud: RouterCloud, **cfg: object):  # noqa: ANN202
    cfg.setdefault("max_new_tokens", N)
    return cloud.client(runner=FakeRunner(), gate=EntropyGate(1.0), session=SessionConfig(**cfg))  # type: ignore[arg-type]


def test_create_returns_openai_types_with_sources_and_usage(cloud: RouterCloud) -> None:
    runner = FakeRunner()
    prompt = runner.apply_chat(MESSAGES)
    with _client(cloud) as client:
        resp = client.chat.completions.create(model="local", messages=MESSAGES)
        # the same answer as the SDK's own generation loop on the same prompt
        same = EdgeSession(runner, EntropyGate(1.0), client, SessionConfig(max_new_tokens=N)).generate(prompt)
    assert isinstance(resp, ChatCompletion) and isinstance(resp.usage, CompletionUsage)
    (choice,) = resp.choices
    want = cloud_greedy(prompt, N)  # the toy cloud's answer: the gate escalated where the edge was unsure
    assert [t["id"] for t in choice.message.xedge_tokens] == want
    assert choice.message.content == runner.decode(want) and choice.finish_reason == "length"
    sources = [t["source"] for t in choice.message.xedge_tokens]
    assert set(sources) == {"local", "cloud"}
    u = resp.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (len(prompt), N, len(prompt) + N)
    assert u.local_tokens == sources.count("local") and u.cloud_tokens == sources.count("cloud")
    assert u.escalated_tokens == u.cloud_tokens > 0 and u.unverified_tokens == 0
    assert u.cloud_computed_prompt_tokens + u.cloud_cached_prompt_tokens == u.cloud_prompt_tokens > 0
    assert u.cloud_cached_prompt_tokens > 0  # the stateful session: later escalations hit the cloud's cache
    assert same.token_ids == want and [s.value for s in same.sources] == sources


def test_stream_yields_chunks_as_tokens_are_committed(cloud: RouterCloud) -> None:
    with _client(cloud) as client:
        whole = client.chat.completions.create(model="local", messages=MESSAGES)
        stream = client.chat.completions.create(
            model="local", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert isinstance(stream, ChatCompletionStream)
        calls, chunks = [], []
        for chunk in stream:
            assert isinstance(chunk, ChatCompletionChunk)
            chunks.append(chunk)
            calls.append(len(cloud.faults.calls))
    assert chunks[0].choices[0].delta.role == "assistant"
    body = [c for c in chunks if c.choices and c.choices[0].finish_reason is None][1:]
    assert len(body) > 3 and "".join(c.choices[0].delta.content for c in body) == whole.choices[0].message.content
    tokens = [t for c in body for t in c.choices[0].delta.xedge_tokens]
    assert tokens == whole.choices[0].message.xedge_tokens
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == N
    assert calls[1] < calls[len(body)]  # the cloud was asked between chunks: tokens came out as committed


def test_sampling_is_verified_by_the_cloud_in_speculative_mode(cloud: RouterCloud) -> None:
    with _client(cloud, strategy="speculative") as client:
        resp = client.chat.completions.create(model="local", messages=MESSAGES, temperature=0.7, top_p=0.9, seed=3)
    assert resp.usage.unverified_tokens == 0 and resp.usage.completion_tokens == N
    temps = {c.temperature for c in cloud.engine.calls if c.max_tokens > 0}
    assert 0.7 in temps  # the cloud sampled (and verified) at the requested temperature


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n=2"),
        ({"stop": ["\n"]}, "stop"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"model": "gpt-4o"}, "not served here"),
        ({"temperature": 0.8}, "speculative"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "tool"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
        ({"messages": []}, "empty"),
        ({"stream_options": {"include_usage": True}}, "stream=True"),
        ({"max_tokens": 0}, ">= 1"),
        ({"max_tokens": 2.5}, "integer, got float"),
        ({"max_completion_tokens": "16"}, "integer, got str"),
    ],
)
def test_unsupported_fields_are_typed_errors(cloud: RouterCloud, kwargs: dict, match: str) -> None:
    args = {"model": "local", "messages": MESSAGES, **kwargs}
    with _client(cloud) as client, pytest.raises(UnsupportedParameterError, match=match):
        client.chat.completions.create(**args)
    assert cloud.faults.calls == []  # refused before anything was generated or sent


def test_labels_are_accepted_and_a_client_without_runner_says_what_it_needs(cloud: RouterCloud) -> None:
    with _client(cloud, max_new_tokens=3) as client:
        resp = client.chat.completions.create(model="local", messages=MESSAGES, user="u1", max_tokens=2)
    assert resp.usage.completion_tokens == 2
    with cloud.client() as bare, pytest.raises(XEdgeError, match="runner="):
        bare.chat.completions.create(model="local", messages=MESSAGES)
