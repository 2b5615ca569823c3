"""Session-aware eviction, router side: every engine call of an edge session carries the session's
opaque key and TTL, and a DELETE is announced on the next engine call to the replica (router/session_events.py)."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from client_edge.protocol import Paths
from client_edge.protocol.engine_xargs import (
    KEY_CLOSED_SESSIONS,
    KEY_SESSION,
    KEY_SESSION_TTL_S,
    parse_request_meta,
)
from router.session_events import SessionEvents, session_key
from tests.fakes.engine import BOS, base_of, make_app


def _open(client, tok, prompt) -> str:
    body = {
        "request_id": uuid.uuid4().hex,
        "tokenizer_fingerprint": tok.fingerprint,
        "prompt_token_ids": prompt,
        "prefill": True,
    }
    r = client.post(Paths.SESSIONS, json=body)
    assert r.status_code == 201, r.text
    return r.json()["state"]["session_id"]


def test_calls_carry_the_session_and_a_delete_is_announced_once() -> None:
    app, engine, tok = make_app(session_ttl_s=900.0)
    with TestClient(app) as client:
        a = _open(client, tok, [BOS, 5, 6])
        b = _open(client, tok, [BOS, 7])
        metas = [dict(c.request_meta) for c in engine.calls]
        assert [m[KEY_SESSION] for m in metas] == [session_key("default", a), session_key("default", b)]
        assert all(m[KEY_SESSION_TTL_S] == 900.0 and KEY_CLOSED_SESSIONS not in m for m in metas)
        assert client.delete(Paths.SESSION.format(session_id=b)).status_code == 204
        r = client.post(
            Paths.ESCALATE.format(session_id=a),
            json={"request_id": "e1", "base": base_of([BOS, 5, 6]), "k": 1},
        )
        assert r.status_code == 200, r.text
        meta = parse_request_meta(dict(engine.calls[-1].request_meta))
        assert meta.session == session_key("default", a)
        assert meta.closed_sessions == (session_key("default", b),)
        assert client.app.state.service.engine.session_events.take(0) == ()  # announced once


def test_pending_closes_are_bounded_per_call_and_in_total() -> None:
    events = SessionEvents(max_pending=40)
    for i in range(50):
        events.closed(0, "t", f"s{i}")
    assert events.dropped == 10
    first, second = events.take(0), events.take(0)
    assert len(first) == 32 and len(second) == 8 and events.take(0) == () and events.take(1) == ()
    assert first[0] == session_key("t", "s10")
