"""Limits an adversarial edge client probes: what vLLM would refuse is refused at create (not as a 502 on
every later escalation), a tenant cannot outgrow its session cap by keeping sessions alive with reads,
and tenant names are the ASCII the error message promises."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from client_edge.protocol import Paths
from router.auth import check_api_keys
from tests.fakes.engine import BOS, base_of, make_app

PROMPT = [BOS, 5, 6, 7]


def _create(client: TestClient, tok, tenant: str = "default", **extra: object) -> httpx.Response:  # noqa: ANN001
    body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT, **extra}
    return client.post(Paths.SESSIONS, json=body, headers={"X-Xedge-Tenant": tenant})


def test_temperature_vllm_refuses_is_refused_at_create() -> None:
    app, engine, tok = make_app()
    with TestClient(app) as client:
        # vLLM's SamplingParams refuses temperature > 2: before, the create answered 201 and every
        # escalation of the session then failed with 502 engine_error.
        r = _create(client, tok, sampling={"temperature": 3.0})
        assert r.status_code == 400, r.text
        assert r.json()["detail"]["code"] == "out_of_range" and "at most 2" in r.json()["detail"]["message"]
        assert len(app.state.service.store) == 0 and engine.calls == []
        sid = _create(client, tok, sampling={"temperature": 2.0, "seed": 1}).json()["state"]["session_id"]
        body = {"request_id": "e1", "base": base_of(PROMPT), "k": 2}
        assert client.post(Paths.ESCALATE.format(session_id=sid), json=body).status_code == 200


def test_reads_keep_a_session_in_the_tenant_cap_as_long_as_in_the_store() -> None:
    app, _, tok = make_app(tenant_max_sessions=1, session_ttl_s=100.0)
    with TestClient(app) as client:
        quota = app.state.service.quota
        now = [0.0]
        quota._clock = lambda: now[0]
        sid = _create(client, tok, "t").json()["state"]["session_id"]
        quota._sessions["t"][sid].last_used = 0.0  # the create was recorded on the real clock
        for _ in range(3):  # the session is read every 60 s: the store never expires it
            now[0] += 60.0
            r = client.get(Paths.SESSION.format(session_id=sid), headers={"X-Xedge-Tenant": "t"})
            assert r.status_code == 200, r.text
        # Before, the counts forgot it 100 s after its create while the store kept it: a second session fit.
        over = _create(client, tok, "t")
        assert over.status_code == 429, over.text
        assert len(app.state.service.store) == 1


def test_tenant_names_are_ascii_as_the_error_says() -> None:
    app, _, tok = make_app()
    with TestClient(app) as client:
        for raw in ("²".encode("latin-1"), "é".encode(), "٣".encode()):  # str.isalnum() took all of these
            body = {"request_id": uuid.uuid4().hex, "tokenizer_fingerprint": tok.fingerprint, "prompt_token_ids": PROMPT}
            r = client.post(Paths.SESSIONS, json=body, headers=[(b"X-Xedge-Tenant", raw)])
            assert r.status_code == 422 and "[A-Za-z0-9._-]" in r.json()["detail"]["message"], (raw, r.text)
        assert len(app.state.service.store) == 0
        assert _create(client, tok, "acme-1.eu_west").status_code == 201
    with pytest.raises(ValueError, match="entry 0: the tenant"):
        check_api_keys({"sk-0123456789abcdef": "acmé"})
