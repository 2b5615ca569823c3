"""What an operation on an edge session needs of the cloud: the tokenizer, the model's limits and engine
calls on the session's replica.

:class:`SessionEngine` is the narrow interface the verify strategies (``router/verification.py``) depend on;
:class:`router.service.EdgeService` owns one and adds the session bookkeeping (store, locks, idempotency).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from client_edge.protocol import CloudToken, TokenLogprob
from client_edge.protocol.engine_xargs import RequestMeta, encode_request_meta
from client_edge.protocol.verify_spec import XARG, ForceSpec
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
from router.session_events import SessionEvents, session_key
from router.sessions.store import Session
from router.settings import RouterSettings
from router.tenancy import tenant_cache_salt
from router.tokenizer import CloudTokenizer

T = TypeVar("T")
log = logging.getLogger("router")

# The eviction-policy category of every engine call made for an edge session (sent to vLLM as vllm_xargs).
EDGE_SESSION_CATEGORY = "edge-session"


class SessionEngine:
    """Engine calls for sessions. ``tok``: the cloud tokenizer; ``model``: what the replicas serve;
    ``max_draft``: the longest draft a verify may check."""

    def __init__(
        self, settings: RouterSettings, engines: Sequence[EngineClient], tokenizer: CloudTokenizer, model: ModelInfo
    ) -> None:
        if len(engines) != len(settings.vllm_urls):
            raise ValueError(f"{len(engines)} engines for {len(settings.vllm_urls)} vllm_urls")
        self.settings = settings
        self.engines = list(engines)
        self.tok = tokenizer
        self.model = model
        self.max_draft = settings.max_draft
        self._verify_ready: set[int] = set()  # replicas where require_verify_processor passed
        self.session_events = SessionEvents()  # session-aware eviction: closes to announce per replica

    def salt(self, tenant: str) -> str | None:
        if not self.settings.tenant_cache_salt:
            return None
        return tenant_cache_salt(self.settings.cache_salt_secret, tenant)

    def check_text(self, text: str, tokens: int, what: str) -> None:
        """Refuse, before tokenising it, text that cannot fit in ``tokens`` cloud tokens: it would have
        more than ``max_chars_per_token`` characters per token (a cheap bound on the tokeniser's work)."""
        limit = tokens * self.settings.max_chars_per_token
        if len(text) > limit:
            raise RouterError(
                "context_overflow",
                f"{what} has {len(text)} characters; at most {limit} fit in {tokens} tokens "
                f"({self.settings.max_chars_per_token} characters per token)",
            )

    async def off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound work (tokenising) in a worker thread, so the event loop keeps serving others."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def check_room(self, prompt_len: int, extra: int, what: str) -> None:
        limit = self.model.max_model_len
        if prompt_len + extra > limit:
            raise RouterError(
                "context_overflow",
                f"{what}: {prompt_len} committed tokens + {extra} more exceed the model context of {limit} tokens",
            )

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
        # What vLLM refuses (max_tokens < 1, prompt + max_tokens beyond max_model_len) is a 4xx here, never
        # an engine error: each route checks its own room first, this catches any it missed.
        self.check_room(len(prompt), max(max_tokens, 1), "engine call")
        if max_tokens < 1:
            raise RouterError("out_of_range", f"max_tokens={max_tokens}: an engine call generates at least one token")
        s = session.sampling
        call = GenerateCall(
            prompt_ids=tuple(prompt),
            max_tokens=max_tokens,
            temperature=0.0 if greedy else s.temperature,
            top_p=1.0 if greedy else s.top_p,
            seed=None if s.seed is None else _call_seed(s.seed, len(prompt)),
            top_n=top_n,
            cache_salt=self.salt(session.tenant),
            # Every call of an edge session re-reads the session's whole prefix: tell the eviction policy
            # which reuse class it belongs to (client_edge/protocol/engine_xargs.py).
            request_meta=(*encode_request_meta(self._session_meta(session)), *extra_meta),
        )
        return await self._call(session.replica, call, "")

    def _session_meta(self, session: Session) -> RequestMeta:
        """The session's reuse class, key and TTL, plus the closes queued for its replica (router/session_events.py)."""
        return RequestMeta(
            category=EDGE_SESSION_CATEGORY,
            tenant=session.tenant,
            session=session_key(session.tenant, session.id),
            session_ttl_s=self.settings.session_ttl_s,
            closed_sessions=self.session_events.take(session.replica),
        )

    async def _call(self, replica: int, call: GenerateCall, what: str) -> GenerateResult:
        try:
            return await self.engines[replica].generate(call)
        except EngineUnavailableError as exc:
            log.warning("replica %d (%s) unavailable: %s", replica, self.settings.vllm_urls[replica], exc)
            raise RouterError("engine_unavailable", f"{what}{self._public(replica, exc)}", retry_after_s=1.0) from exc
        except EngineError as exc:
            log.warning("replica %d (%s) error: %s", replica, self.settings.vllm_urls[replica], exc)
            raise RouterError("engine_error", f"{what}{self._public(replica, exc)}") from exc

    def _public(self, replica: int, exc: Exception) -> str:
        """The engine's message without the replica's internal URL (the log keeps it)."""
        url = self.settings.vllm_urls[replica]
        return str(exc).replace(url.rstrip("/"), f"replica {replica}").replace(url, f"replica {replica}")

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
        result = await self._call(replica, probe, "verify-processor probe: ")
        got = [t.token_id for t in result.tokens]
        if got != [a, b, a]:
            raise RouterError(
                "unsupported",
                f"sampling verify needs xedge's logits processor in vLLM (--logits-processors "
                f"server.engine.verify.vllm_adapter:SpeculativeVerifyProcessor; `xedge serve --sampling-verify`); replica "
                f"{replica} ignored it (probe forced {[a, b, a]}, got {got}). Start vLLM "
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


def _call_seed(seed: int, position: int) -> int:
    """Per-call engine seed: reproducible for a session seed and position, but not the same random
    stream on every call (which would correlate the samples of successive escalations)."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
