"""Session lifecycle and bad input against the fake engine: every error is a 4xx with a clear code and
leaves the session untouched."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import CHECKPOINT_INTERVAL, Paths, token_prefix_hash
from router.engine.base import EngineUnavailableError
from tests.fakes.engine import BOS, base_of, make_app

PROMPT = [BOS, 5, 6, 7, 8, 9, 10, 11, 12, 13]


@pytest.fixture
def env():
    app, engine, tok = make_app(max_k=8, max_body_bytes=4096, max_model_len=64)
    with TestClient(app) as client:
        yield client, engine, tok


def create(client, tok, prompt=PROMPT, rid="c1", **extra):
    body = {"request_id": rid, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": prompt, **extra}
    return client.post(Paths.SESSIONS, json=body)


def state(client, sid):
    r = client.get(Paths.SESSION.format(session_id=sid), params={"include_content": True})
    assert r.status_code == 200, r.text
    return r.json()["state"]


def test_create_get_delete(env):
    client, engine, tok = env
    r = create(client, tok)
    assert r.status_code == 201, r.text
    assert r.headers["x-xedge-protocol"] == "1"
    st = r.json()["state"]
    assert st["committed"] == base_of(PROMPT)
    assert st["mode"] == "token" and st["tenant"] == "default" and st["max_model_len"] == 64
    assert engine.calls == []  # no prefill asked
    sid = st["session_id"]
    assert state(client, sid)["token_ids"] == PROMPT
    assert client.delete(Paths.SESSION.format(session_id=sid)).status_code == 204
    r = client.get(Paths.SESSION.format(session_id=sid))
    assert r.status_code == 404 and r.json()["detail"]["code"] == "unknown_session"


def test_create_with_prefill_reports_engine_usage(env):
    client, engine, tok = env
    r = create(client, tok, prefill=True)
    assert r.status_code == 201, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] == len(PROMPT) and usage["engine_calls"] == 1
    assert len(engine.calls) == 1 and list(engine.calls[0].prompt_ids) == PROMPT


def test_create_is_idempotent_and_detects_reuse(env):
    client, _, tok = env
    a, b = create(client, tok, rid="same"), create(client, tok, rid="same")
    assert a.status_code == b.status_code == 201
    assert a.json()["state"]["session_id"] == b.json()["state"]["session_id"]
    c = create(client, tok, prompt=PROMPT[:3], rid="same")
    assert c.status_code == 409 and c.json()["detail"]["code"] == "idempotency_conflict"


def test_other_tenant_cannot_see_session(env):
    client, _, tok = env
    sid = create(client, tok).json()["state"]["session_id"]
    r = client.get(Paths.SESSION.format(session_id=sid), headers={"X-Xedge-Tenant": "other"})
    assert r.status_code == 404 and r.json()["detail"]["code"] == "unknown_session"


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"tokenizer_fingerprint": "v1:99:abc"}, 400, "fingerprint_mismatch", "use mode 'text'"),
        ({"prompt_token_ids": [BOS, 10_000]}, 400, "token_out_of_vocab", "10000"),
        ({"prompt_token_ids": [BOS, -1]}, 422, "invalid_request", "prompt_token_ids"),
        ({"prompt_token_ids": [BOS] * 65}, 400, "context_overflow", "64"),
        ({"protocol_version": 2}, 400, "unsupported_protocol_version", "speaks 1"),
        ({"prompt_text": "hi"}, 422, "invalid_request", "prompt_token_ids"),
        ({"surprise": 1}, 422, "invalid_request", "surprise"),
    ],
)
def test_create_bad_input(env, body, status, code, needle):
    client, _, tok = env
    full = {"request_id": "x", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT, **body}
    r = client.post(Paths.SESSIONS, json=full)
    assert r.status_code == status, r.text
    assert r.json()["detail"]["code"] == code
    assert needle in r.json()["detail"]["message"]


def test_body_too_large_is_413(env):
    client, _, tok = env
    r = create(client, tok, prompt=[5] * 3000)
    assert r.status_code == 413 and r.json()["detail"]["code"] == "body_too_large"


def test_sync_truncate_and_checkpoints(env):
    client, engine, tok = env
    sid = create(client, tok).json()["state"]["session_id"]
    new = [5, 6, 7]
    r = client.post(Paths.SYNC.format(session_id=sid), json={"request_id": "s1", "base": base_of(PROMPT), "new_token_ids": new})
    assert r.status_code == 200, r.text
    assert r.json()["state"]["committed"] == base_of(PROMPT + new)
    assert r.json()["usage"]["engine_calls"] == 1  # prefill defaults on
    r = client.post(Paths.TRUNCATE.format(session_id=sid), json={"request_id": "t1", "length": 4})
    assert r.status_code == 200 and r.json()["state"]["committed"] == base_of(PROMPT[:4])
    r = client.post(Paths.TRUNCATE.format(session_id=sid), json={"request_id": "t2", "length": 5})
    assert r.status_code == 400 and r.json()["detail"]["code"] == "out_of_range"
    assert state(client, sid)["token_ids"] == PROMPT[:4]


def test_checkpoints_let_the_edge_find_the_common_prefix():
    app, _, tok = make_app()
    prompt = [BOS] + [5 + i % 20 for i in range(2 * CHECKPOINT_INTERVAL + 10)]
    with TestClient(app) as client:
        st = create(client, tok, prompt=prompt).json()["state"]
    assert [c["length"] for c in st["checkpoints"]] == [CHECKPOINT_INTERVAL, 2 * CHECKPOINT_INTERVAL]
    assert st["checkpoints"][1]["hash"] == token_prefix_hash(prompt[: 2 * CHECKPOINT_INTERVAL])


def test_errors_leave_the_session_untouched(env):
    client, engine, tok = env
    sid = create(client, tok).json()["state"]["session_id"]
    url = Paths.ESCALATE.format(session_id=sid)
    before = state(client, sid)
    cases = [
        ({"new_token_ids": [10_000]}, 400, "token_out_of_vocab"),
        ({"new_token_ids": [5] * 60}, 400, "context_overflow"),
        ({"k": 9}, 400, "out_of_range"),
        ({"k": 0}, 422, "invalid_request"),
        ({"top_n": 21}, 422, "invalid_request"),
        ({"new_token_ids": [], "new_text": "ab"}, 400, "mode_mismatch"),
        ({"base": base_of(PROMPT[:-1])}, 409, "base_mismatch"),
    ]
    for i, (extra, status, code) in enumerate(cases):
        body = {"request_id": f"e{i}", "base": base_of(PROMPT), "new_token_ids": [5], **extra}
        r = client.post(url, json=body)
        assert r.status_code == status, (extra, r.text)
        assert r.json()["detail"]["code"] == code, extra
        assert state(client, sid) == before, extra
    engine.fail_with = EngineUnavailableError("replica down")
    r = client.post(url, json={"request_id": "down", "base": base_of(PROMPT), "new_token_ids": [5]})
    assert r.status_code == 503 and r.json()["detail"]["code"] == "engine_unavailable"
    assert state(client, sid) == before
    engine.fail_with = None  # the same request id succeeds once the replica is back
    r = client.post(url, json={"request_id": "down", "base": base_of(PROMPT), "new_token_ids": [5]})
    assert r.status_code == 200 and r.json()["state"]["committed"] == base_of(PROMPT + [5])


def test_base_mismatch_returns_cloud_state(env):
    client, _, tok = env
    sid = create(client, tok).json()["state"]["session_id"]
    r = client.post(
        Paths.ESCALATE.format(session_id=sid),
        json={"request_id": "stale", "base": base_of(PROMPT + [5]), "new_token_ids": [6]},
    )
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail["code"] == "base_mismatch"
    assert detail["state"]["committed"] == base_of(PROMPT)


def test_observers_see_every_operation_and_its_error_code(env):
    from router.observer import ServiceObserver

    client, engine, tok = env
    seen = []

    class Recorder(ServiceObserver):
        def on_operation(self, op, tenant, seconds, usage, error):
            seen.append((op, tenant, usage is not None, error))

    client.app.state.service.observers.append(Recorder())
    sid = create(client, tok, prefill=True).json()["state"]["session_id"]
    client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "e", "base": base_of(PROMPT)})
    client.post(Paths.ESCALATE.format(session_id=sid), json={"request_id": "f", "base": base_of([5])})
    client.delete(Paths.SESSION.format(session_id=sid))
    assert seen == [
        ("create", "default", True, None),
        ("escalate", "default", True, None),
        ("escalate", "default", False, "base_mismatch"),
        ("delete", "default", False, None),
    ]


def test_concurrent_creates_with_one_request_id_make_one_session():
    import asyncio

    import httpx

    app, _, tok = make_app()

    async def run() -> set[str]:
        body = {"request_id": "dup", "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT,
                "prefill": True}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                replies = await asyncio.gather(*(client.post(Paths.SESSIONS, json=body) for _ in range(5)))
        assert all(r.status_code == 201 for r in replies)
        assert len(app.state.service.store) == 1
        return {r.json()["state"]["session_id"] for r in replies}

    assert len(asyncio.run(run())) == 1


def test_concurrent_escalations_on_one_base_commit_once():
    import asyncio

    import httpx

    app, _, tok = make_app()

    async def run() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post(Paths.SESSIONS, json={"request_id": "c", "tokenizer_fingerprint": tok.fingerprint,
                                                            "prompt_token_ids": PROMPT})
                url = Paths.ESCALATE.format(session_id=r.json()["state"]["session_id"])
                replies = await asyncio.gather(*(
                    client.post(url, json={"request_id": f"e{i}", "base": base_of(PROMPT), "new_token_ids": [5 + i]})
                    for i in range(4)
                ))
        return sorted(r.status_code for r in replies)

    assert asyncio.run(run()) == [200, 409, 409, 409]


def test_openapi_documents_every_edge_route_and_error_body(env):
    client, _, _ = env
    spec = client.get("/openapi.json").json()
    for path in (Paths.INFO, Paths.SESSIONS, Paths.SESSION, Paths.ESCALATE, Paths.VERIFY, Paths.SYNC, Paths.TRUNCATE):
        assert path in spec["paths"], path
    escalate = spec["paths"][Paths.ESCALATE]["post"]
    assert {"200", "400", "404", "409", "413", "503"} <= set(escalate["responses"])
    assert escalate["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
