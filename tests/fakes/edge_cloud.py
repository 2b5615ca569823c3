"""An in-process fake of the router's edge protocol (httpx MockTransport), with fault injection.

Token mode: the cloud model is ``fake_runner.cloud_next``. Text mode: the cloud tokenises text one code
point per token and its model continues with ``cloud_next_char``. Faults (``faults``, consumed one per
request): an HTTP status, ``"timeout"`` (nothing done), ``"commit_then_timeout"`` (the request is
applied, the answer is lost). ``down = True`` refuses every connection (a killed cloud).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import httpx

from client_edge.protocol import (
    CHECKPOINT_INTERVAL,
    CloudInfo,
    CloudToken,
    CreateSessionRequest,
    EscalateRequest,
    EscalateResponse,
    PrefixRef,
    SamplingSettings,
    SessionResponse,
    SessionState,
    SyncRequest,
    TruncateRequest,
    Usage,
    VerifyRequest,
    VerifyResponse,
    text_prefix_hash,
    token_prefix_hash,
)
from client_edge.retry import RetryPolicy
from tests.fakes.edge_runner import CHARS, VOCAB, cloud_next

MAX_MODEL_LEN = 4096
# Retries in tests back off for microseconds: the policy itself is tested in test_edge_retry.py.
FAST_RETRY = RetryPolicy(max_retries=2, initial_delay_s=1e-4, max_delay_s=1e-3)


def cloud_next_char(text: str) -> str:
    return CHARS[(ord(text[-1]) * 7 + len(text)) % len(CHARS)] if text else "a"


class FakeCloud:
    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.sessions: dict[str, dict[str, Any]] = {}
        self.records: dict[str, tuple[bytes, int, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, str | None]] = []  # (method, path, request_id)
        self.faults: list[int | str] = []
        self.down = False
        self.down_after: int | None = None  # go down once this many requests were answered
        self._ids = itertools.count()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- plumbing --------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        rid = body.get("request_id")
        self.calls.append((request.method, request.url.path, rid))
        if self.down_after is not None and len(self.calls) > self.down_after:
            self.down = True
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if isinstance(fault, int):
            return self._error(fault, "internal" if fault >= 500 else "invalid_request", "injected")
        if rid is not None and rid in self.records:
            raw, status, answer = self.records[rid]
            if raw != request.content:
                return self._error(409, "idempotency_conflict", "request_id reused with another body")
            return httpx.Response(status, json=answer)
        status, answer = self._route(request.method, request.url.path, body)
        if rid is not None and status < 500:
            self.records[rid] = (request.content, status, answer)
        if fault == "commit_then_timeout":
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(status, json=answer)

    @staticmethod
    def _error(status: int, code: str, message: str, state: SessionState | None = None) -> httpx.Response:
        return httpx.Response(status, json=FakeCloud._err(code, message, state))

    @staticmethod
    def _err(code: str, message: str, state: SessionState | None = None) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": code, "message": message}
        if state is not None:
            detail["state"] = state.model_dump(mode="json")
        return {"detail": detail}

    def _hash(self, s: dict[str, Any], units: Any) -> str:
        return text_prefix_hash(units) if s["mode"] == "text" else token_prefix_hash(units)

    def state(self, sid: str) -> SessionState:
        s = self.sessions[sid]
        units = s["units"]
        cps = [
            PrefixRef(length=n, hash=self._hash(s, units[:n]))
            for n in range(CHECKPOINT_INTERVAL, len(units) + 1, CHECKPOINT_INTERVAL)
        ]
        return SessionState(
            session_id=sid,
            mode=s["mode"],
            committed=PrefixRef(length=len(units), hash=self._hash(s, units)),
            checkpoints=cps,
            cloud_tokens=len(units),
            sampling=SamplingSettings(),
            tenant="test",
            replica=0,
            max_model_len=MAX_MODEL_LEN,
        )

    def _usage(self, s: dict[str, Any], completion: int) -> Usage:
        prompt = len(s["units"])
        cached = min(s["cached"], prompt)
        s["cached"] = prompt
        return Usage(
            prompt_tokens=prompt,
            cached_tokens=cached,
            computed_tokens=prompt - cached,
            completion_tokens=completion,
            engine_calls=1,
        )

    # --- routes ----------------------------------------------------------------------------------
    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/info":
            return 200, CloudInfo(
                model="fake",
                tokenizer_fingerprint=self.fingerprint,
                vocab_size=len(VOCAB) + 1,
                max_model_len=MAX_MODEL_LEN,
                max_k=256,
                max_top_n=20,
                max_draft=64,
                max_body_bytes=1 << 20,
                replicas=1,
            ).model_dump(mode="json")
        if path == "/v1/sessions" and method == "POST":
            return self._create(CreateSessionRequest.model_validate(body))
        m = re.fullmatch(r"/v1/sessions/([^/]+)(?:/(\w+))?", path)
        if m is None:
            return 404, self._err("invalid_request", f"no route {path}")
        sid, action = m.group(1), m.group(2)
        if sid not in self.sessions:
            return 404, self._err("unknown_session", f"session {sid} does not exist")
        if action is None and method == "GET":
            return 200, SessionResponse(state=self.state(sid)).model_dump(mode="json")
        if action is None and method == "DELETE":
            del self.sessions[sid]
            return 200, {}
        if action == "truncate":
            req = TruncateRequest.model_validate(body)
            s = self.sessions[sid]
            if req.length > len(s["units"]):
                return 400, self._err("out_of_range", "truncate beyond committed length")
            s["units"] = s["units"][: req.length]
            s["cached"] = min(s["cached"], req.length)
            return 200, SessionResponse(state=self.state(sid)).model_dump(mode="json")
        model = {"escalate": EscalateRequest, "verify": VerifyRequest, "sync": SyncRequest}[action]
        req = model.model_validate(body)
        s = self.sessions[sid]
        if req.base.length != len(s["units"]) or req.base.hash != self._hash(s, s["units"]):
            return 409, self._err("base_mismatch", "base does not match", self.state(sid))
        s["units"] = s["units"] + (req.new_text if s["mode"] == "text" else list(req.new_token_ids))
        return getattr(self, f"_{action}")(sid, s, req)

    def _create(self, req: CreateSessionRequest) -> tuple[int, dict[str, Any]]:
        if req.mode == "token" and req.tokenizer_fingerprint != self.fingerprint:
            return 400, self._err("fingerprint_mismatch", "edge tokenizer differs from the cloud's")
        sid = f"s{next(self._ids)}"
        units = req.prompt_text if req.mode == "text" else list(req.prompt_token_ids)
        self.sessions[sid] = {"mode": req.mode, "units": units, "cached": 0}
        usage = self._usage(self.sessions[sid], 0) if req.prefill else None
        return 200, SessionResponse(state=self.state(sid), usage=usage).model_dump(mode="json")

    def _continue(self, s: dict[str, Any], n: int) -> list[CloudToken]:
        units = s["units"]
        out = []
        for _ in range(n):
            if s["mode"] == "text":
                c = cloud_next_char(units)
                out.append(CloudToken(token_id=ord(c), text=c, logprob=0.0))
                units = units + c
            else:
                t = cloud_next(units)
                out.append(CloudToken(token_id=t, text=VOCAB[t], logprob=0.0))
                units = units + [t]
        return out

    def _escalate(self, sid: str, s: dict[str, Any], req: EscalateRequest) -> tuple[int, dict[str, Any]]:
        toks = self._continue(s, req.k)
        text = "".join(t.text for t in toks)
        proposal: Any = req.proposal_text if s["mode"] == "text" else req.proposal_token_ids
        got: Any = text if s["mode"] == "text" else [t.token_id for t in toks]
        agreed_prefix = 0
        while agreed_prefix < min(len(proposal), len(got)) and proposal[agreed_prefix] == got[agreed_prefix]:
            agreed_prefix += 1
        agreed = None if not proposal else agreed_prefix == len(proposal)
        resp = EscalateResponse(
            state=self.state(sid),
            tokens=toks,
            text=text,
            agreed=agreed,
            agreed_prefix=agreed_prefix,
            finish_reason="length",
            usage=self._usage(s, req.k),
        )
        return 200, resp.model_dump(mode="json")

    def _verify(self, sid: str, s: dict[str, Any], req: VerifyRequest) -> tuple[int, dict[str, Any]]:
        draft: Any = req.draft_text if s["mode"] == "text" else req.draft_token_ids
        state0 = self.state(sid)
        base_units = s["units"]
        accepted = 0
        for unit in draft:
            want = self._continue({"mode": s["mode"], "units": s["units"]}, 1)[0]
            if (want.text if s["mode"] == "text" else want.token_id) != unit:
                break
            s["units"] = s["units"] + ([unit] if s["mode"] == "token" else unit)
            accepted += 1
        correction = self._continue(s, 1)[0]
        s["units"] = base_units  # nothing the cloud returns is committed
        usage = self._usage(s, accepted + 1)
        accepted_text = (
            draft[:accepted] if s["mode"] == "text" else "".join(VOCAB[t] for t in draft[:accepted])
        )
        resp = VerifyResponse(
            state=state0,
            accepted=accepted,
            correction=correction,
            accepted_text=accepted_text,
            method="greedy",
            usage=usage,
        )
        return 200, resp.model_dump(mode="json")

    def _sync(self, sid: str, s: dict[str, Any], req: SyncRequest) -> tuple[int, dict[str, Any]]:
        usage = self._usage(s, 0) if req.prefill else None
        return 200, SessionResponse(state=self.state(sid), usage=usage).model_dump(mode="json")
