"""The edge-session operations (create, get, delete, escalate, verify, sync, truncate), HTTP-free.

Every mutating operation runs under the session's lock in the same order: replay a recorded reply to a
retried ``request_id``; check the base (409 with the cloud's state); validate the delta; build the new
committed content; call the engine; only then swap the new content in and record the reply. An error at
any step leaves the session exactly as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from client_edge.protocol import (
    PROTOCOL_VERSION,
    CloudInfo,
    CloudToken,
    CreateSessionRequest,
    EscalateRequest,
    PrefixRef,
    SessionResponse,
    SyncRequest,
    TokenLogprob,
    TruncateRequest,
    VerifyRequest,
    VerifyResponse,
)
from client_edge.protocol import EscalateResponse as EscalateReply
from client_edge.protocol.engine_xargs import RequestMeta, encode_request_meta
from client_edge.protocol.verify_spec import XARG, ForceSpec
from router import verification
from router.engine.base import (
    EngineClient,
    EngineError,
    EngineToken,
    EngineUnavailableError,
    GenerateCall,
    GenerateResult,
    ModelInfo,
)
from router.errors import RouterError
from router.observer import ServiceObserver, observed
from router.replicas import HashRing
from router.sessions.content import Content, TextContent, TokenContent
from router.sessions.store import Session, SessionStore, body_digest
from router.settings import RouterSettings
from router.speculative import common_prefix
from router.tenancy import tenant_cache_salt
from router.tokenizer import CloudTokenizer
from router.usage import usage_of

# The eviction-policy category of every engine call made for an edge session (sent to vLLM as vllm_xargs).
EDGE_SESSION_CATEGORY = "edge-session"


class EdgeService:
    def __init__(
        self,
        settings: RouterSettings,
        engines: Sequence[EngineClient],
        tokenizer: CloudTokenizer,
        model: ModelInfo,
    ) -> None:
        self.settings = settings
        self.engines = list(engines)
        self.tok = tokenizer
        self.model = model
        self.ring = HashRing(settings.vllm_urls)
        if len(self.engines) != len(settings.vllm_urls):
            raise ValueError(f"{len(self.engines)} engines for {len(settings.vllm_urls)} vllm_urls")
        self.fingerprint = tokenizer.fingerprint
        self.store = SessionStore(
            max_sessions=settings.max_sessions, ttl_s=settings.session_ttl_s, records=settings.idempotency_records
        )
        self._create_locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}
        self.observers: list[ServiceObserver] = []
        self._verify_ready: set[int] = set()  # replicas where require_verify_processor passed

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
        if not self.settings.tenant_cache_salt:
            return None
        return tenant_cache_salt(self.settings.cache_salt_secret, tenant)

    def _check_ids(self, ids: Sequence[int], what: str) -> None:
        bad = next((t for t in ids if t >= self.tok.vocab_size), None)
        if bad is not None:
            raise RouterError(
                "token_out_of_vocab", f"{what} holds token id {bad}; the cloud vocabulary has ids 0..{self.tok.vocab_size - 1}"
            )

    def check_room(self, prompt_len: int, extra: int, what: str) -> None:
        limit = self.model.max_model_len
        if prompt_len + extra > limit:
            raise RouterError(
                "context_overflow",
                f"{what}: {prompt_len} committed tokens + {extra} more exceed the model context of {limit} tokens",
            )

    @staticmethod
    def _check_base(session: Session, base: PrefixRef) -> None:
        if base.length != session.content.length or base.hash != session.content.hash:
            raise RouterError(
                "base_mismatch",
                f"base (length {base.length}) does not match the committed prefix (length "
                f"{session.content.length}); resync from the returned state",
                state=session.state(),
            )

    def _delta(self, session: Session, new_token_ids: Sequence[int], new_text: str) -> Content:
        content = session.content
        if session.mode == "token":
            if new_text:
                raise RouterError("mode_mismatch", "session is in token mode: send new_token_ids, not new_text")
            self._check_ids(new_token_ids, "new_token_ids")
            assert isinstance(content, TokenContent)
            return content.append(new_token_ids)
        if new_token_ids:
            raise RouterError("mode_mismatch", "session is in text mode: send new_text, not new_token_ids")
        assert isinstance(content, TextContent)
        return content.append(new_text, self.tok) if new_text else content

    async def generate(
        self,
        session: Session,
        prompt: Sequence[int],
        max_tokens: int,
        *,
        greedy: bool = False,
        top_n: int = 0,
        extra_meta: tuple[tuple[str, str | int | float], ...] = (),
    ) -> GenerateResult:
        """One engine call on the session's replica; ``extra_meta`` adds ``vllm_xargs`` entries."""
        if not prompt:
            raise RouterError("invalid_request", "the committed prefix is empty: the cloud has nothing to continue")
        s = session.sampling
        call = GenerateCall(
            prompt_ids=tuple(prompt),
            max_tokens=max_tokens,
            temperature=0.0 if greedy else s.temperature,
            top_p=1.0 if greedy else s.top_p,
            seed=None if s.seed is None else _call_seed(s.seed, len(prompt)),
            top_n=top_n,
            cache_salt=self._salt(session.tenant),
            # Every call of an edge session re-reads the session's whole prefix: tell the eviction policy
            # which reuse class it belongs to (client_edge/protocol/engine_xargs.py).
            request_meta=(*encode_request_meta(RequestMeta(category=EDGE_SESSION_CATEGORY, tenant=session.tenant)), *extra_meta),
        )
        try:
            return await self.engines[session.replica].generate(call)
        except EngineUnavailableError as exc:
            raise RouterError("engine_unavailable", str(exc)) from exc
        except EngineError as exc:
            raise RouterError("engine_error", str(exc)) from exc

    async def require_verify_processor(self, session: Session) -> None:
        """Raise ``unsupported`` unless the session's replica runs xedge's verify logits processor.

        Checked once per replica (a success is remembered): a greedy 3-token call from a 1-token prompt
        that asks the processor to force the tokens (a, b, a), two ids from the middle of the vocabulary.
        Greedy decoding cannot produce that unless the processor forced it, so a replica without it
        (not installed, or dropped by vLLM as under its own speculative decoding) is caught here instead
        of silently sampling unverified tokens.
        """
        replica = session.replica
        if replica in self._verify_ready:
            return
        # mid-vocabulary ids: ordinary tokens in BPE vocabularies (special and stop tokens sit at the ends)
        a, b = [t for t in range(self.tok.vocab_size // 2, self.tok.vocab_size) if t not in self.tok.eos_token_ids][:2]
        probe = GenerateCall(
            prompt_ids=(b,), max_tokens=3, temperature=0.0, request_meta=((XARG, ForceSpec((a, b, a)).encode()),)
        )
        try:
            result = await self.engines[replica].generate(probe)
        except EngineUnavailableError as exc:
            raise RouterError("engine_unavailable", str(exc)) from exc
        except EngineError as exc:
            raise RouterError("engine_error", f"verify-processor probe: {exc}") from exc
        got = [t.token_id for t in result.tokens]
        if got != [a, b, a]:
            raise RouterError(
                "unsupported",
                f"sampling verify needs xedge's logits processor in vLLM (--logits-processors "
                f"server.engine.verify.vllm_adapter:SpeculativeVerifyProcessor; `xedge serve --sampling-verify`); replica "
                f"{self.settings.vllm_urls[replica]} ignored it (probe forced {[a, b, a]}, got {got}). Start vLLM "
                "with it (and without vLLM's own speculative decoding), or use greedy sessions",
            )
        self._verify_ready.add(replica)

    def cloud_tokens(self, context: Sequence[int], tokens: Sequence[EngineToken]) -> list[CloudToken]:
        """The engine's tokens with the text each adds; an end-of-sequence token adds none (its marker,
        e.g. "<eos>", is not answer text: a text-mode edge would otherwise re-tokenise it as words)."""
        texts = self.tok.token_texts(context, [t.token_id for t in tokens])
        eos = self.tok.eos_token_ids
        return [
            CloudToken(
                token_id=t.token_id,
                text="" if t.token_id in eos else text,
                logprob=t.logprob,
                top_logprobs=[TokenLogprob(token_id=i, text=self.tok.decode([i]), logprob=lp) for i, lp in t.top],
            )
            for t, text in zip(tokens, texts, strict=True)
        ]

    async def _locked(self, session: Session, request_id: str, digest: str, op):  # type: ignore[no-untyped-def]
        async with session.lock:
            if not self.store.holds(session):  # deleted or expired while this request waited for the lock
                raise RouterError("unknown_session", f"session {session.id!r} was deleted or expired")
            replay = session.replay(request_id, digest)
            if replay is not None:
                return replay
            content, reply = await op()
            session.content = content
            session.record(request_id, digest, reply, self.settings.idempotency_records)
            return reply

    # -- operations ----------------------------------------------------------------------------------

    @observed("create")
    async def create(self, req: CreateSessionRequest, tenant: str) -> SessionResponse:
        if req.protocol_version != PROTOCOL_VERSION:
            raise RouterError(
                "unsupported_protocol_version",
                f"protocol_version {req.protocol_version} is not supported; this router speaks {PROTOCOL_VERSION}",
            )
        digest = body_digest(req)
        key = (tenant, req.request_id)
        # One lock per (tenant, request_id) in flight, so concurrent retries of a create wait for the first.
        entry = self._create_locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                replay = self.store.create_replay(tenant, req.request_id, digest)
                if replay is not None:
                    assert isinstance(replay, SessionResponse)
                    return replay
                reply = await self._create(req, tenant)
                self.store.create_record(tenant, req.request_id, digest, reply)
                return reply
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self._create_locks[key]

    async def _create(self, req: CreateSessionRequest, tenant: str) -> SessionResponse:
        content: Content
        if req.mode == "token":
            if req.tokenizer_fingerprint != self.fingerprint:
                raise RouterError(
                    "fingerprint_mismatch",
                    f"tokenizer fingerprint {req.tokenizer_fingerprint!r} differs from the cloud's "
                    f"{self.fingerprint!r}: use mode 'text' for a different tokenizer",
                )
            self._check_ids(req.prompt_token_ids, "prompt_token_ids")
            content = TokenContent.of(req.prompt_token_ids)
        else:
            content = TextContent.start(self.tok, self.settings.text_holdback_tokens).append(req.prompt_text, self.tok)
        prompt = content.prompt_ids(self.tok)
        self.check_room(len(prompt), 1 if req.prefill else 0, "prompt")
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
            usage = usage_of([await self.generate(session, prompt, 1, greedy=True)])
        self.store.add(session)
        return SessionResponse(state=session.state(), usage=usage)

    def get(self, session_id: str, tenant: str, *, include_content: bool) -> SessionResponse:
        return SessionResponse(state=self.store.get(session_id, tenant).state(include_content=include_content))

    @observed("delete")
    async def delete(self, session_id: str, tenant: str) -> None:
        session = self.store.get(session_id, tenant)
        async with session.lock:
            self.store.remove(session_id, tenant)

    @observed("sync")
    async def sync(self, session_id: str, req: SyncRequest, tenant: str) -> SessionResponse:
        session = self.store.get(session_id, tenant)

        async def op() -> tuple[Content, SessionResponse]:
            self._check_base(session, req.base)
            content = self._delta(session, req.new_token_ids, req.new_text)
            prompt = content.prompt_ids(self.tok)
            self.check_room(len(prompt), 1 if req.prefill else 0, "sync")
            usage = usage_of([await self.generate(session, prompt, 1, greedy=True)]) if req.prefill else None
            return content, SessionResponse(state=session.state(content), usage=usage)

        return await self._locked(session, req.request_id, body_digest(req), op)

    @observed("truncate")
    async def truncate(self, session_id: str, req: TruncateRequest, tenant: str) -> SessionResponse:
        session = self.store.get(session_id, tenant)

        async def op() -> tuple[Content, SessionResponse]:
            current = session.content
            if req.length > current.length:
                raise RouterError(
                    "out_of_range", f"cannot truncate to {req.length}: the session holds {current.length} units"
                )
            if isinstance(current, TextContent):
                content: Content = current.truncate(req.length, self.tok)
            else:
                assert isinstance(current, TokenContent)
                content = current.truncate(req.length)
            return content, SessionResponse(state=session.state(content))

        return await self._locked(session, req.request_id, body_digest(req), op)

    @observed("escalate")
    async def escalate(self, session_id: str, req: EscalateRequest, tenant: str) -> EscalateReply:
        session = self.store.get(session_id, tenant)
        if req.k > self.settings.max_k or req.top_n > self.settings.max_top_n:
            raise RouterError(
                "out_of_range",
                f"k={req.k}, top_n={req.top_n}: this router allows k <= {self.settings.max_k}, "
                f"top_n <= {self.settings.max_top_n}",
            )

        async def op() -> tuple[Content, EscalateReply]:
            self._check_base(session, req.base)
            content = self._delta(session, req.new_token_ids, req.new_text)
            if session.mode == "token":
                if req.proposal_text:
                    raise RouterError("mode_mismatch", "session is in token mode: send proposal_token_ids")
                self._check_ids(req.proposal_token_ids, "proposal_token_ids")
            elif req.proposal_token_ids:
                raise RouterError("mode_mismatch", "session is in text mode: send proposal_text")
            prompt = content.prompt_ids(self.tok)
            self.check_room(len(prompt), req.k, "escalate")
            result = await self.generate(session, prompt, req.k, top_n=req.top_n)
            tokens = self.cloud_tokens(prompt, result.tokens)
            text = "".join(t.text for t in tokens)
            if session.mode == "token":
                proposal: Sequence[object] = req.proposal_token_ids
                agreed_prefix = common_prefix(req.proposal_token_ids, [t.token_id for t in tokens])
            else:
                proposal = req.proposal_text
                agreed_prefix = common_prefix(req.proposal_text, text)
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
        session = self.store.get(session_id, tenant)
        if len(req.draft_token_ids) > self.settings.max_draft or req.top_n > self.settings.max_top_n:
            raise RouterError(
                "out_of_range",
                f"draft of {len(req.draft_token_ids)} tokens, top_n={req.top_n}: this router allows drafts of "
                f"at most {self.settings.max_draft} tokens and top_n <= {self.settings.max_top_n}",
            )

        async def op() -> tuple[Content, VerifyResponse]:
            self._check_base(session, req.base)
            content = self._delta(session, req.new_token_ids, req.new_text)
            prompt = content.prompt_ids(self.tok)
            if session.mode == "token":
                if req.draft_text:
                    raise RouterError("mode_mismatch", "session is in token mode: send draft_token_ids")
                self._check_ids(req.draft_token_ids, "draft_token_ids")
                for row in req.draft_distributions or ():
                    self._check_ids(list(row), "draft_distributions")
                if session.sampling.greedy:
                    body = await verification.greedy(self, session, prompt, req)
                else:
                    body = await verification.rejection(self, session, prompt, req)
            else:
                if req.draft_token_ids:
                    raise RouterError("mode_mismatch", "session is in text mode: send draft_text")
                body = await verification.text(self, session, prompt, req)
            correction = body["correction"]
            eos = correction is not None and correction.token_id in self.tok.eos_token_ids
            return content, VerifyResponse(state=session.state(content), finish_reason="stop" if eos else "length",
                                           **body)

        return await self._locked(session, req.request_id, body_digest(req), op)


def _call_seed(seed: int, position: int) -> int:
    """Per-call engine seed: reproducible for a session seed and position, but not the same random
    stream on every call (which would correlate the samples of successive escalations)."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
