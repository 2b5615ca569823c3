"""Two router processes on one Redis, over real HTTP on loopback (fake engine): a session created on A is
escalated on B; a retry on A of B's request gets B's recorded reply; a router restart keeps every session,
idempotency record and checkpoint; a frozen store answers 503 ``store_unavailable`` and changes nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from client_edge.protocol import CHECKPOINT_INTERVAL, Paths
from tests.fakes.engine import BOS, base_of, make_app
from tests.fakes.loopback import serve
from tests.fakes.redis_server import RedisServer, redis_or_skip

PROMPT = [BOS, *(3 + i % 40 for i in range(CHECKPOINT_INTERVAL + 5))]  # long enough for one checkpoint


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path)
    yield server
    server.stop()


def _router(url: str):  # noqa: ANN202 - a context manager yielding (base URL, tokenizer)
    app, _, tok = make_app(session_store=url, max_k=8)
    return serve(app), tok


def test_two_routers_share_sessions_and_a_restart_loses_nothing(redis_server: RedisServer) -> None:
    ctx_a, tok = _router(redis_server.url)
    ctx_b, _ = _router(redis_server.url)
    with ctx_a as url_a, ctx_b as url_b, httpx.Client(timeout=30) as http:
        create = {"request_id": "c1", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT, "prefill": True}
        created = http.post(url_a + Paths.SESSIONS, json=create)
        assert created.status_code == 201, created.text
        sid = created.json()["state"]["session_id"]
        # escalate on B, committing two edge tokens
        esc = {"request_id": "e1", "base": base_of(PROMPT), "new_token_ids": [7, 8], "k": 4, "top_n": 2}
        on_b = http.post(url_b + Paths.ESCALATE.format(session_id=sid), json=esc)
        assert on_b.status_code == 200, on_b.text
        assert on_b.json()["state"]["committed"] == base_of([*PROMPT, 7, 8])
        # the same request retried on A: B's recorded reply, nothing committed twice
        again = http.post(url_a + Paths.ESCALATE.format(session_id=sid), json=esc)
        assert again.status_code == 200 and again.json() == on_b.json()
        # a stale base on A is a 409 carrying the state B committed
        stale = http.post(url_a + Paths.SYNC.format(session_id=sid), json={"request_id": "s0", "base": base_of(PROMPT), "new_token_ids": [9]})
        assert stale.status_code == 409 and stale.json()["detail"]["state"]["committed"] == base_of([*PROMPT, 7, 8])
        sync = {"request_id": "s1", "base": base_of([*PROMPT, 7, 8]), "new_token_ids": [9]}
        synced = http.post(url_a + Paths.SYNC.format(session_id=sid), json=sync)
        assert synced.status_code == 200, synced.text
        before = http.get(url_b + Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()
        assert before["state"]["token_ids"] == [*PROMPT, 7, 8, 9]
        assert len(before["state"]["checkpoints"]) == 1
        # another tenant sees nothing on either router
        other = http.get(url_b + Paths.SESSION.format(session_id=sid), headers={"X-Xedge-Tenant": "other"})
        assert other.status_code == 404

    # Both routers are gone; a fresh one (new process state, same store) has everything.
    ctx_c, _ = _router(redis_server.url)
    with ctx_c as url_c, httpx.Client(timeout=30) as http:
        after = http.get(url_c + Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()
        assert after == before  # content, committed ref and checkpoints
        assert http.post(url_c + Paths.ESCALATE.format(session_id=sid), json=esc).json() == on_b.json()
        assert http.post(url_c + Paths.SYNC.format(session_id=sid), json=sync).json() == synced.json()
        replayed = http.post(url_c + Paths.SESSIONS, json=create)  # the create record survived too
        assert replayed.status_code == 201 and replayed.json()["state"]["session_id"] == sid
        nxt = {"request_id": "e2", "base": base_of([*PROMPT, 7, 8, 9]), "k": 2}
        assert http.post(url_c + Paths.ESCALATE.format(session_id=sid), json=nxt).status_code == 200


def test_a_frozen_store_is_a_503_and_the_retry_after_it_commits_once(redis_server: RedisServer) -> None:
    ctx, tok = _router(redis_server.url)
    with ctx as url, httpx.Client(timeout=30) as http:
        create = {"request_id": "c1", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT}
        sid = http.post(url + Paths.SESSIONS, json=create).json()["state"]["session_id"]
        sync = {"request_id": "s1", "base": base_of(PROMPT), "new_token_ids": [5, 6]}
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            down = http.post(url + Paths.SYNC.format(session_id=sid), json=sync)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert down.status_code == 503 and down.json()["detail"]["code"] == "store_unavailable", down.text
        state = http.get(url + Paths.SESSION.format(session_id=sid), params={"include_content": True}).json()["state"]
        assert state["token_ids"] == PROMPT  # unchanged
        retried = http.post(url + Paths.SYNC.format(session_id=sid), json=sync)
        assert retried.status_code == 200 and retried.json()["state"]["committed"] == base_of([*PROMPT, 5, 6])
        assert http.post(url + Paths.SYNC.format(session_id=sid), json=sync).json() == retried.json()


def test_ready_reports_an_unreachable_store(redis_server: RedisServer) -> None:
    from router.app import create_app
    from router.operations import OperationsExtension
    from router.settings import RouterSettings
    from tests.fakes.engine import FakeEngine, FakeTokenizer
    from tests.fakes.vllm_server import make_fake_vllm

    with serve(make_fake_vllm()) as vllm_url:  # a replica whose /health answers
        settings = RouterSettings(vllm_urls=[vllm_url], startup_timeout_s=0, session_store=redis_server.url)
        tok = FakeTokenizer()
        app = create_app(settings, engines=[FakeEngine(tok.vocab_size)], tokenizer=tok,
                         extensions=[OperationsExtension(settings)])  # fmt: skip
        with serve(app) as url:
            ok = httpx.get(f"{url}/ready", timeout=10)
            assert ok.status_code == 200 and ok.json()["store"] == "ok", ok.text
            assert redis_server.proc is not None
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            try:
                down = httpx.get(f"{url}/ready", timeout=10)
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            assert down.status_code == 503 and down.json()["detail"]["code"] == "store_unavailable", down.text
            assert down.json()["store"] == "unreachable" and redis_server.url not in down.text
            assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
