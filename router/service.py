"""The edge-session operations (create, get, delete, escalate, verify, sync, truncate), HTTP-free.

Every mutating operation runs under the session's lock in the same order: replay a recorded reply to a
retried ``request_id``; check the base (409 with the cloud's state); validate the delta; build the new
committed content; call the engine; only then swap the new content in and record the reply. An error at
any step leaves the session exactly as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from client_edge.protocol import (
    PROTOCOL_VERSION,
    CloudInfo,
    CreateSessionRequest,
    EscalateRequest,
    PrefixRef,
    SessionResponse,
    SyncRequest,
    TruncateRequest,
    VerifyRequest,
    VerifyResponse,
)
from client_edge.protocol import EscalateResponse as EscalateReply
from router import verification
from router.engine.base import EngineClient, ModelInfo
from router.errors import RouterError
from router.observer import ServiceObserver, observed
from router.quota import TenantQuota
from router.replicas import HashRing
from router.session_engine import SessionEngine
from router.sessions.content import CONTENT_BY_MODE, Content, check_ids
from router.sessions.store import Session, body_digest, open_store
from router.settings import RouterSettings
from router.speculative import common_prefix
from router.tokenizer import CloudTokenizer
from router.usage import usage_of

# Optimistic commits tried per request before giving up (each failure means another router committed).
_COMMIT_ATTEMPTS = 16


class EdgeService:
    def __init__(
        self,
        settings: RouterSettings,
        engines: Sequence[EngineClient],
        tokenizer: CloudTokenizer,
        model: ModelInfo,
    ) -> None:
        self.settings = settings
        self.engine = SessionEngine(settings, engines, tokenizer, model)
        self.engines = self.engine.engines
        self.tok = tokenizer
        self.model = model
        self.ring = HashRing(settings.vllm_urls)
        self.fingerprint = tokenizer.fingerprint
        self.store = open_store(
            settings.session_store,
            max_sessions=settings.max_sessions,
            ttl_s=settings.session_ttl_s,
            records=settings.idempotency_records,
            reply_bytes=settings.idempotency_bytes,
        )
        self._create_locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}
        self.observers: list[ServiceObserver] = []
        self.quota = TenantQuota(settings)

    # -- helpers -------------------------------------------------------------------------------------

    def info(self) -> CloudInfo:
        s = self.settings
        return CloudInfo(
            protocol_version=PROTOCOL_VERSION,
            model=self.model.name,
            tokenizer_fingerprint=self.fingerprint,
            vocab_size=self.tok.vocab_size,
            max_model_len=self.model.max_model_len,
            max_k=s.max_k,
            max_top_n=s.max_top_n,
            max_draft=s.max_draft,
            max_body_bytes=s.max_body_bytes,
            replicas=len(self.engines),
        )

    def _salt(self, tenant: str) -> str | None:
        return self.engine.salt(tenant)

    @staticmethod
    def _check_base(session: Session, base: PrefixRef) -> None:
        if base.length != session.content.length or base.hash != session.content.hash:
            raise RouterError(
                "base_mismatch",
                f"base (length {base.length}) does not match the committed prefix (length "
                f"{session.content.length}); resync from the returned state",
                state=session.state(),
            )

    async def _delta(self, session: Session, new_token_ids: Sequence[int], new_text: str) -> Content:
        if not new_text:  # nothing to tokenise
            return session.content.extend(new_token_ids, new_text, self.tok)
        self.engine.check_text(new_text, self.model.max_model_len, "new_text")
        return await self.engine.off_loop(session.content.extend, new_token_ids, new_text, self.tok)

    async def _session(self, session_id: str, tenant: str) -> Session:
        """The tenant's session; loading it renews its TTL in the store and in the tenant's counts alike."""
        session = await self.store.get(session_id, tenant)
        self.quota.used(tenant, session_id)
        return session

    async def _locked(self, session: Session, request_id: str, digest: str, op):  # type: ignore[no-untyped-def]
        op = self.quota.metered(session.tenant, session.id, op)  # refused before commit when over the byte budget
        async with session.lock:
            for _ in range(_COMMIT_ATTEMPTS):
                # The latest committed state (unknown_session if deleted or expired while this request waited).
                await self.store.refresh(session)
                replay = await self.store.replay(session, request_id, digest)
                if replay is not None:
                    return replay
                content, reply = await op()
                if await self.store.commit(session, content, request_id, digest, reply):
                    return reply
                # Another router process committed to this session meanwhile: start over on its state.
            raise RouterError(
                "store_unavailable", f"session {session.id!r} kept changing under {_COMMIT_ATTEMPTS} attempts; retry"
            )

    # -- operations ----------------------------------------------------------------------------------

    @observed("create")
    async def create(self, req: CreateSessionRequest, tenant: str) -> SessionResponse:
        if req.protocol_version != PROTOCOL_VERSION:
            raise RouterError(
                "unsupported_protocol_version",
                f"protocol_version {req.protocol_version} is not supported; this router speaks {PROTOCOL_VERSION}",
            )
        if req.sampling.temperature > self.settings.max_temperature:
            # Refused here, not by vLLM on the session's first sampled call (a 502 on every escalation).
            raise RouterError(
                "out_of_range",
                f"sampling.temperature={req.sampling.temperature:g}: this router allows at most "
                f"{self.settings.max_temperature:g}",
            )
        digest = body_digest(req)
        key = (tenant, req.request_id)
        # One lock per (tenant, request_id) in flight, so concurrent retries of a create wait for the first.
        entry = self._create_locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                replay = await self.store.create_replay(tenant, req.request_id, digest)
                if replay is not None:
                    assert isinstance(replay, SessionResponse)
                    return replay
                with self.quota.creating(tenant) as opened:
                    reply = await self._create(req, tenant)
                    opened(reply)
                recorded = await self.store.create_record(tenant, req.request_id, digest, reply)
                assert isinstance(recorded, SessionResponse)
                return recorded
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self._create_locks[key]

    async def _create(self, req: CreateSessionRequest, tenant: str) -> SessionResponse:
        self.engine.check_text(req.prompt_text, self.model.max_model_len, "prompt_text")
        content = await self.engine.off_loop(
            CONTENT_BY_MODE[req.mode].open,
            req, self.tok, fingerprint=self.fingerprint, holdback=self.settings.text_holdback_tokens,
        )  # fmt: skip
        prompt = content.prompt_ids(self.tok)
        self.engine.check_room(len(prompt), 1 if req.prefill else 0, "prompt")
        session_id = self.store.new_id()
        session = Session(
            id=session_id,
            tenant=tenant,
            mode=req.mode,
            sampling=req.sampling,
            replica=self.ring.pick(session_id),
            content=content,
            max_model_len=self.model.max_model_len,
        )
        usage = None
        if req.prefill:
            usage = usage_of([await self.engine.generate(session, prompt, 1, greedy=True)])
        await self.store.add(session)
        return SessionResponse(state=session.state(), usage=usage)

    async def get(self, session_id: str, tenant: str, *, include_content: bool) -> SessionResponse:
        session = await self._session(session_id, tenant)
        return SessionResponse(state=session.state(include_content=include_content))

    @observed("delete")
    async def delete(self, session_id: str, tenant: str) -> None:
        session = await self._session(session_id, tenant)
        async with session.lock:
            await self.store.remove(session_id, tenant)
            self.engine.session_events.closed(session.replica, tenant, session_id)

    @observed("sync")
    async def sync(self, session_id: str, req: SyncRequest, tenant: str) -> SessionResponse:
        session = await self._session(session_id, tenant)

        async def op() -> tuple[Content, SessionResponse]:
            self._check_base(session, req.base)
            content = await self._delta(session, req.new_token_ids, req.new_text)
            prompt = content.prompt_ids(self.tok)
            self.engine.check_room(len(prompt), 1 if req.prefill else 0, "sync")
            usage = usage_of([await self.engine.generate(session, prompt, 1, greedy=True)]) if req.prefill else None
            return content, SessionResponse(state=session.state(content), usage=usage)

        return await self._locked(session, req.request_id, body_digest(req), op)

    @observed("truncate")
    async def truncate(self, session_id: str, req: TruncateRequest, tenant: str) -> SessionResponse:
        session = await self._session(session_id, tenant)

        async def op() -> tuple[Content, SessionResponse]:
            current = session.content
            if req.length > current.length:
                raise RouterError(
                    "out_of_range", f"cannot truncate to {req.length}: the session holds {current.length} units"
                )
            content = current.truncate(req.length, self.tok)
            return content, SessionResponse(state=session.state(content))

        return await self._locked(session, req.request_id, body_digest(req), op)

    @observed("escalate")
    async def escalate(self, session_id: str, req: EscalateRequest, tenant: str) -> EscalateReply:
        session = await self._session(session_id, tenant)
        if req.k > self.settings.max_k or req.top_n > self.settings.max_top_n:
            raise RouterError(
                "out_of_range",
                f"k={req.k}, top_n={req.top_n}: this router allows k <= {self.settings.max_k}, "
                f"top_n <= {self.settings.max_top_n}",
            )

        async def op() -> tuple[Content, EscalateReply]:
            self._check_base(session, req.base)
            content = await self._delta(session, req.new_token_ids, req.new_text)
            proposal = content.units(req.proposal_token_ids, req.proposal_text, "proposal", self.tok)
            prompt = content.prompt_ids(self.tok)
            self.engine.check_room(len(prompt), req.k, "escalate")
            result = await self.engine.generate(session, prompt, req.k, top_n=req.top_n)
            tokens = self.engine.cloud_tokens(prompt, result.tokens)
            text = "".join(t.text for t in tokens)
            agreed_prefix = common_prefix(proposal, content.produced(tokens))
            reply = EscalateReply(
                state=session.state(content),
                tokens=tokens,
                text=text,
                agreed=(agreed_prefix == len(proposal)) if proposal else None,
                agreed_prefix=agreed_prefix,
                finish_reason="stop" if result.finish_reason == "stop" else "length",
                usage=usage_of([result]),
            )
            return content, reply

        return await self._locked(session, req.request_id, body_digest(req), op)

    @observed("verify")
    async def verify(self, session_id: str, req: VerifyRequest, tenant: str) -> VerifyResponse:
        session = await self._session(session_id, tenant)
        if len(req.draft_token_ids) > self.settings.max_draft or req.top_n > self.settings.max_top_n:
            raise RouterError(
                "out_of_range",
                f"draft of {len(req.draft_token_ids)} tokens, top_n={req.top_n}: this router allows drafts of "
                f"at most {self.settings.max_draft} tokens and top_n <= {self.settings.max_top_n}",
            )

        async def op() -> tuple[Content, VerifyResponse]:
            self._check_base(session, req.base)
            content = await self._delta(session, req.new_token_ids, req.new_text)
            prompt = content.prompt_ids(self.tok)
            content.units(req.draft_token_ids, req.draft_text, "draft", self.tok)
            for row in req.draft_distributions or ():
                check_ids(list(row), self.tok, "draft_distributions")
            strategy = verification.STRATEGIES[content.verify_method(session.sampling)]
            body = await strategy(self.engine, session, prompt, req)
            correction = body["correction"]
            eos = correction is not None and correction.token_id in self.tok.eos_token_ids
            return content, VerifyResponse(state=session.state(content), finish_reason="stop" if eos else "length",
                                           **body)

        return await self._locked(session, req.request_id, body_digest(req), op)
