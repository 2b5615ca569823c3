"""Issue 16, findings 2-4: one tenant cannot take the router from the others. Per-tenant caps on
sessions, bytes held and requests in flight (429 with Retry-After, nothing changed); text is tokenised
off the event loop, and only after a cheap length check."""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths
from tests.fakes.engine import BOS, FakeEngine, FakeTokenizer, base_of, make_app

PROMPT = [BOS, 5, 6, 7]


def _create(client, tok, tenant: str, **extra) -> httpx.Response:  # noqa: ANN001
    body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT,
            **extra}  # fmt: skip
    return client.post(Paths.SESSIONS, json=body, headers={"X-Xedge-Tenant": tenant})


def test_one_tenant_at_its_session_cap_leaves_room_for_others() -> None:
    app, _, tok = make_app(max_sessions=10, tenant_max_sessions=4)
    with TestClient(app) as client:
        ids = [_create(client, tok, "greedy").json()["state"]["session_id"] for _ in range(4)]
        over = _create(client, tok, "greedy")
        assert over.status_code == 429 and over.headers["Retry-After"].isdigit(), over.text
        assert "sessions" in over.json()["detail"]["message"]
        assert len(app.state.service.store) == 4  # the refused create stored nothing
        for _ in range(4):  # before: one tenant filled the global cap and everyone else got 429
            assert _create(client, tok, "other").status_code == 201
        headers = {"X-Xedge-Tenant": "greedy"}
        assert client.delete(Paths.SESSION.format(session_id=ids[0]), headers=headers).status_code == 204
        assert _create(client, tok, "greedy").status_code == 201  # a deleted session frees its slot


def test_byte_budget_refuses_before_commit_and_spares_other_tenants() -> None:
    app, _, tok = make_app(tenant_max_bytes=40_000, max_k=64)
    with TestClient(app) as client:
        big = {"X-Xedge-Tenant": "big"}
        sid = _create(client, tok, "big").json()["state"]["session_id"]
        url = Paths.ESCALATE.format(session_id=sid)
        committed, refused = list(PROMPT), None
        for i in range(40):  # k=64 with 20 alternatives a token: a large reply kept for retries each time
            body = {"request_id": f"e{i}", "base": base_of(committed), "new_token_ids": [5], "k": 64, "top_n": 20}
            r = client.post(url, json=body, headers=big)
            if r.status_code == 429:
                refused = r
                break
            assert r.status_code == 200, r.text
            committed.append(5)
        assert refused is not None, "the byte budget never applied"
        assert "bytes" in refused.json()["detail"]["message"] and refused.headers["Retry-After"]
        state = client.get(Paths.SESSION.format(session_id=sid), headers=big).json()["state"]
        assert state["committed"]["length"] == len(committed)  # the refused escalation committed nothing
        assert app.state.service.quota.bytes_held("big") <= 40_000
        assert _create(client, tok, "small").status_code == 201


class _GatedEngine(FakeEngine):
    """Holds every generate call until ``gate`` is set, so requests stay in flight."""

    def __init__(self, vocab: int) -> None:
        super().__init__(vocab)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def generate(self, call):  # noqa: ANN001, ANN201
        self.waiting += 1
        await self.gate.wait()
        return await super().generate(call)


def test_requests_in_flight_are_capped_per_tenant() -> None:
    from router.app import create_app
    from router.settings import RouterSettings

    tok = FakeTokenizer()
    engine = _GatedEngine(tok.vocab_size)
    settings = RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0, tenant_max_concurrent=2)
    app = create_app(settings, engines=[engine], tokenizer=tok)

    async def run() -> tuple[list[int], int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                def create(tenant: str):  # noqa: ANN202
                    body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint,
                            "prompt_token_ids": PROMPT, "prefill": True}  # fmt: skip
                    return client.post(Paths.SESSIONS, json=body, headers={"X-Xedge-Tenant": tenant})

                held = [asyncio.create_task(create("busy")) for _ in range(2)]
                while engine.waiting < 2:
                    await asyncio.sleep(0)
                third = await create("busy")  # answered at once, while two are in flight
                other = asyncio.create_task(create("calm"))
                while engine.waiting < 3:
                    await asyncio.sleep(0)
                engine.gate.set()
                done = [r.status_code for r in await asyncio.gather(*held, other)]
                again = await create("busy")
                return [third.status_code, *done, again.status_code], int(third.headers.get("Retry-After", "0"))

    codes, retry_after = asyncio.run(run())
    assert codes == [429, 201, 201, 201, 201] and retry_after >= 1


class _ThreadRecordingTokenizer(FakeTokenizer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, str]] = []  # (thread, text)

    def encode_with_offsets(self, text: str):  # noqa: ANN201
        self.calls.append((threading.get_ident(), text))
        return super().encode_with_offsets(text)


def test_text_is_tokenised_off_the_event_loop_after_a_length_check() -> None:
    from router.app import create_app
    from router.settings import RouterSettings

    tok = _ThreadRecordingTokenizer()
    settings = RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0, max_chars_per_token=8)
    app = create_app(settings, engines=[FakeEngine(tok.vocab_size, max_model_len=512)], tokenizer=tok)
    loop_threads: list[int] = []

    @app.get("/_loop_thread")
    async def loop_thread() -> dict:
        loop_threads.append(threading.get_ident())
        return {}

    prompt = "the cat sat on the mat and then the dog came in"
    with TestClient(app) as client:
        client.get("/_loop_thread")
        tok.calls.clear()  # the fingerprint probe at startup
        body = {"request_id": "t1", "mode": "text", "tokenizer_fingerprint": "other", "prompt_text": prompt}
        r = client.post(Paths.SESSIONS, json=body)
        assert r.status_code == 201, r.text
        whole = [thread for thread, text in tok.calls if text == prompt]
        assert whole and loop_threads[0] not in whole  # the prompt was tokenised in a worker thread
        # on the loop only the short re-tokenisable tail (text_holdback_tokens) of each engine call
        assert all(len(text) <= 8 for thread, text in tok.calls if thread == loop_threads[0])
        tok.calls.clear()
        huge = {**body, "request_id": "t2", "prompt_text": "a" * (512 * 8 + 1)}
        r = client.post(Paths.SESSIONS, json=huge)
        assert r.status_code == 400 and r.json()["detail"]["code"] == "context_overflow"
        assert tok.calls == []  # refused before any tokenising
        sid = client.post(Paths.SESSIONS, json={**body, "request_id": "t3"}).json()["state"]["session_id"]
        text_base = client.get(Paths.SESSION.format(session_id=sid)).json()["state"]["committed"]
        r = client.post(Paths.VERIFY.format(session_id=sid),
                        json={"request_id": "v", "base": text_base, "draft_text": "b" * (16 * 8 + 1)})  # fmt: skip
        assert r.status_code == 400 and r.json()["detail"]["code"] == "context_overflow"


@pytest.mark.parametrize("tenant_max_concurrent", [1])
def test_a_refused_request_frees_nothing_it_did_not_hold(tenant_max_concurrent: int) -> None:
    app, _, tok = make_app(tenant_max_concurrent=tenant_max_concurrent)
    with TestClient(app) as client:
        for _ in range(3):  # sequential requests each get the one slot back
            assert _create(client, tok, "t").status_code == 201
        assert app.state.service.quota.in_flight("t") == 0
