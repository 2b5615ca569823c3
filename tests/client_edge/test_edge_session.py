"""EdgeSession end to end against the real router on loopback (toy cloud engine, faults on the wire): both
strategies, both modes, failures and resyncs."""

from __future__ import annotations

import httpx
import pytest

from client_edge.client import EdgeClient
from client_edge.gates.confidence import EntropyGate
from client_edge.gates.random_gate import RandomGate
from client_edge.result import TokenSource
from client_edge.session import EdgeSession, SessionConfig
from tests.client_edge.router_cloud import RouterCloud, router_cloud
from tests.fakes.edge_runner import FakeRunner, ToyCloudEngine, cloud_greedy, cloud_text, edge_next

PROMPT = [3, 1, 4, 1, 5, 9, 2]
N = 40


def _edge_greedy(prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(edge_next(ids))
    return ids[len(prompt) :]


def test_edge_and_cloud_models_really_differ() -> None:
    assert _edge_greedy(PROMPT, N) != cloud_greedy(PROMPT, N)


def test_small_only_is_the_edge_greedy_answer(runner: FakeRunner) -> None:
    res = EdgeSession(runner, EntropyGate(0.5), None, SessionConfig(max_new_tokens=N)).generate(PROMPT)
    assert res.token_ids == _edge_greedy(PROMPT, N)
    # the gate fired (the edge is unsure every fifth position) but with no cloud the edge kept its tokens
    assert res.escalated_positions == res.n_unverified > 0
    assert res.finish_reason == "length" and res.round_trips == 0


def test_always_escalate_equals_cloud_greedy(
    runner: FakeRunner, cloud: RouterCloud, client: EdgeClient
) -> None:
    res = EdgeSession(runner, RandomGate.at_rate(1.0), client, SessionConfig(max_new_tokens=N)).generate(
        PROMPT
    )
    assert res.token_ids == cloud_greedy(PROMPT, N)
    assert res.sources == [TokenSource.CLOUD] * N
    assert cloud.state(res.cloud_session_id)["token_ids"] == PROMPT + res.token_ids  # final sync: nothing lost
    assert res.unsynced_units == 0
    # stateful deltas: after the prefill each escalation computes the token sent since the last one plus at
    # most a partial KV block (4 tokens here); a stateless cloud would recompute the whole prefix each time
    assert res.usage.computed_tokens <= len(PROMPT) + N + 4 * res.usage.requests
    assert res.usage.computed_tokens < res.usage.prompt_tokens / 4


def test_entropy_gate_escalates_only_where_needed(
    runner: FakeRunner, cloud: RouterCloud, client: EdgeClient
) -> None:
    res = EdgeSession(runner, EntropyGate(1.0), client, SessionConfig(max_new_tokens=N)).generate(PROMPT)
    assert res.token_ids == cloud_greedy(PROMPT, N)  # the edge is unsure exactly where the cloud differs
    assert 0 < res.n_cloud == res.escalated_positions < N // 3
    assert res.count(TokenSource.LOCAL) == N - res.n_cloud


@pytest.mark.parametrize("draft_len", [1, 3, 4, 7])
def test_speculative_equals_cloud_greedy(
    runner: FakeRunner, client: EdgeClient, cloud: RouterCloud, draft_len: int
) -> None:
    cfg = SessionConfig(strategy="speculative", draft_len=draft_len, max_new_tokens=N)
    res = EdgeSession(runner, EntropyGate(1.0), client, cfg).generate(PROMPT)
    assert res.token_ids == cloud_greedy(PROMPT, N)
    assert res.n_unverified == 0 and res.count(TokenSource.VERIFIED) > 0
    assert cloud.state(res.cloud_session_id)["token_ids"] == PROMPT + res.token_ids
    # one verify per round plus create and final sync
    verifies = sum(1 for c in cloud.faults.calls if c[1].endswith("/verify"))
    assert verifies <= N // 1 and (draft_len == 1 or verifies < N // 2)
    assert runner.ids == PROMPT + res.token_ids[:-1] or runner.ids == PROMPT + res.token_ids


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_cloud_killed_mid_answer_edge_finishes_locally(
    runner: FakeRunner, cloud: RouterCloud, client: EdgeClient, strategy: str
) -> None:
    cloud.faults.down_after = 4
    cfg = SessionConfig(strategy=strategy, max_new_tokens=N, failure_cooldown=3, cloud_deadline_s=1.0)
    res = EdgeSession(runner, EntropyGate(1.0), client, cfg).generate(PROMPT)
    assert len(res.token_ids) == N and res.finish_reason == "length"  # never cut short
    assert res.n_unverified > 0 and res.cloud_failures > 0
    assert res.unsynced_units > 0
    first_bad = res.sources.index(TokenSource.UNVERIFIED)
    assert (
        TokenSource.CLOUD not in res.sources[first_bad:]
        and TokenSource.VERIFIED not in res.sources[first_bad:]
    )
    assert res.token_ids[:first_bad] == cloud_greedy(PROMPT, N)[:first_bad]


def test_lost_answer_then_409_resync(runner: FakeRunner, cloud: RouterCloud) -> None:
    client = cloud.client(max_retries=0)
    # the create and the first escalation go through; the second is applied but its answer is lost
    cloud.faults.queue = [None, None, "commit_then_timeout"]
    cfg = SessionConfig(max_new_tokens=N, failure_cooldown=0, max_retries=0)
    res = EdgeSession(runner, EntropyGate(1.0), client, cfg).generate(PROMPT)
    assert res.n_unverified == 1 and res.resyncs >= 1
    assert cloud.state(res.cloud_session_id)["token_ids"] == PROMPT + res.token_ids
    assert res.unsynced_units == 0


def test_lost_answer_is_recovered_by_the_idempotent_retry(
    runner: FakeRunner, cloud: RouterCloud, client: EdgeClient
) -> None:
    cloud.faults.queue = [None, None, "commit_then_timeout"]
    res = EdgeSession(runner, EntropyGate(1.0), client, SessionConfig(max_new_tokens=N)).generate(PROMPT)
    assert res.n_unverified == 0 and res.resyncs == 0 and res.token_ids == cloud_greedy(PROMPT, N)


def test_session_lost_on_the_cloud_is_reopened(
    runner: FakeRunner, cloud: RouterCloud, client: EdgeClient
) -> None:
    cfg = SessionConfig(max_new_tokens=N)
    session = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg)
    forgotten: list[str] = []

    def forget(request: httpx.Request) -> None:  # the router loses the session (restart, TTL) mid-answer
        path = request.url.path
        if path.endswith("/escalate") and len(cloud.faults.calls) > 10 and not forgotten:
            forgotten.append(path.split("/")[3])
            cloud.delete(forgotten[0])

    cloud.faults.before.append(forget)
    res = session.generate(PROMPT)
    assert res.token_ids == cloud_greedy(PROMPT, N) and res.resyncs == 1
    assert forgotten and res.cloud_session_id != forgotten[0]
    assert cloud.state(res.cloud_session_id)["token_ids"] == PROMPT + res.token_ids


def test_eos_ends_the_answer(cloud: RouterCloud, client: EdgeClient) -> None:
    runner = FakeRunner(eos_at_length=len(PROMPT) + 6)
    res = EdgeSession(runner, EntropyGate(5.0), client, SessionConfig(max_new_tokens=N)).generate(PROMPT)
    assert res.finish_reason == "eos" and len(res.token_ids) == 7 and res.text == runner.decode(res.token_ids)


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_text_mode_cloud_holds_exactly_the_edge_text(runner: FakeRunner, strategy: str) -> None:
    cfg = SessionConfig(mode="text", strategy=strategy, max_new_tokens=N)
    gate = RandomGate.at_rate(1.0) if strategy == "escalate" else EntropyGate(1.0)
    with router_cloud(text_mode=True) as cloud, cloud.client() as client:
        res = EdgeSession(runner, gate, client, cfg).generate(PROMPT, cloud_prompt_text="the question is ")
        state = cloud.state(res.cloud_session_id)
    assert state["mode"] == "text"
    assert state["text"] == "the question is " + res.text
    # every character of the answer is the cloud's greedy text (drafts accepted, corrections, answers)
    assert res.text == cloud_text("the question is ", len(res.text))
    assert res.n_unverified == 0 and res.unsynced_units == 0


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_text_mode_ends_where_the_cloud_ends(runner: FakeRunner, strategy: str) -> None:
    """Text mode: the cloud's EOS has no text, so the edge learns the end from finish_reason."""
    prompt_text = "the question is "
    engine = ToyCloudEngine(eos_at=len(prompt_text) + 6)  # one cloud token per character here
    cfg = SessionConfig(strategy=strategy, mode="text", max_new_tokens=N)
    with router_cloud(text_mode=True, engine=engine) as cloud, cloud.client() as client:
        res = EdgeSession(runner, RandomGate.at_rate(1.0), client, cfg).generate(PROMPT, cloud_prompt_text=prompt_text)
    assert res.finish_reason == "eos" and res.n_unverified == 0
    assert res.text == cloud_text(prompt_text, 6)


def test_text_mode_retokenises_into_edge_bigrams(runner: FakeRunner, client: EdgeClient) -> None:
    from client_edge.bridge import TextBridge
    from client_edge.protocol import CloudToken

    bridge = TextBridge(runner, "p")
    ids = bridge.cloud_ids([CloudToken(token_id=0, text="th", logprob=0.0)], "th", [])
    assert ids == runner.encode("th") and len(ids) == 1


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError):
        SessionConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        SessionConfig(draft_len=65)


@pytest.mark.parametrize("strategy", ["escalate", "speculative"])
def test_stream_yields_each_commit_as_it_happens(cloud: RouterCloud, client: EdgeClient, strategy: str) -> None:
    cfg = SessionConfig(strategy=strategy, max_new_tokens=N)
    session = EdgeSession(FakeRunner(), EntropyGate(1.0), client, cfg)
    stream = session.stream(PROMPT)
    ids, sources, calls_at_commit = [], [], []
    for new_ids, new_sources in stream:
        assert new_ids and len(new_ids) == len(new_sources)
        ids += new_ids
        sources += new_sources
        calls_at_commit.append(len(cloud.faults.calls))
    assert stream.result is not None and stream.result.token_ids == ids == cloud_greedy(PROMPT, N)
    assert stream.result.sources == sources
    # commits arrive while the answer is being made: the cloud is called between them, and the final sync
    # comes after the last one
    assert calls_at_commit[0] < calls_at_commit[-1] < len(cloud.faults.calls)
