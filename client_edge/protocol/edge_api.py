"""Wire protocol between edge clients and the xedge router, version 1.

The cloud keeps, per edge conversation, a *session*: the committed prefix (token ids in ``token`` mode,
text in ``text`` mode), the sampling settings, the tenant and the vLLM replica it is pinned to. Every
mutating request names the prefix it builds on (``base``: length + hash) and carries a client-chosen
``request_id``; the router answers a retry with the same ``request_id`` from its record (same body ->
same answer, different body -> 409 ``idempotency_conflict``) and answers a base it does not hold with
409 ``base_mismatch`` plus its :class:`SessionState` (with checkpoints), so the edge can resync.

Nothing the cloud *returns* is committed: the edge appends the tokens it keeps and sends them as part of
the next request's ``new_token_ids`` (or ``new_text``). The committed prefix is therefore always exactly
what the edge has said, and vLLM's prefix cache serves it on the next call.

Modes (``SessionMode``):
- ``token``: edge and cloud share a tokenizer (same :func:`tokenizer_fingerprint`); ids on the wire;
  lengths count tokens; hashes are :func:`token_prefix_hash`.
- ``text``: tokenizers differ; the edge sends text, the cloud tokenises each appended piece itself
  (already committed cloud tokens never change) and answers with text the edge re-tokenises; lengths
  count Unicode code points of the committed text; hashes are :func:`text_prefix_hash`.

Models are pydantic v2. Requests forbid unknown fields (a typo is a 422, not silently ignored);
responses ignore unknown fields so a newer router can add fields without breaking older clients.
This module imports nothing of ours and nothing beyond pydantic and the standard library.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

PROTOCOL_VERSION: Final = 1
#: Header the router sets on every edge-protocol response.
PROTOCOL_HEADER: Final = "X-Xedge-Protocol"
#: Header naming the tenant when the deployment has no API keys (the router may override it).
TENANT_HEADER: Final = "X-Xedge-Tenant"

# Static upper bounds; a router may enforce tighter ones (advertised in CloudInfo).
MAX_K: Final = 256
MAX_TOP_N: Final = 20
MAX_DRAFT: Final = 64
MAX_DRAFT_SUPPORT: Final = 256  # ids per row of VerifyRequest.draft_distributions
DRAFT_SUPPORT_TOLERANCE: Final = 1e-3  # |sum of a draft distribution - 1|
#: Interval (in units of the session mode) between the checkpoints a SessionState lists.
CHECKPOINT_INTERVAL: Final = 64


class Paths:
    """URL paths of the edge protocol (format with ``session_id=...``)."""

    INFO: Final = "/v1/info"
    SESSIONS: Final = "/v1/sessions"
    SESSION: Final = "/v1/sessions/{session_id}"
    ESCALATE: Final = "/v1/sessions/{session_id}/escalate"
    VERIFY: Final = "/v1/sessions/{session_id}/verify"
    SYNC: Final = "/v1/sessions/{session_id}/sync"
    TRUNCATE: Final = "/v1/sessions/{session_id}/truncate"


SessionMode = Literal["token", "text"]
#: A token id: a JSON integer (strict: "5", 5.0 and true are refused, not coerced).
TokenId = Annotated[StrictInt, Field(ge=0, lt=2**31)]
#: A token id as a JSON object key (JSON keys are strings, so "5" is how it arrives).
TokenIdKey = Annotated[int, Field(ge=0, lt=2**31)]


def _unicode_text(value: str) -> str:
    """Text must be Unicode scalar values: a lone surrogate (JSON "\\ud800") cannot be encoded as UTF-8
    and would fail every later step (hashing, tokenising, logging)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text holds a lone surrogate at character {exc.start} (not valid Unicode)") from None
    return value


#: Text of the protocol (prompts, deltas, drafts): valid Unicode only.
Text = Annotated[str, AfterValidator(_unicode_text)]
RequestId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
ErrorCode = Literal[
    "invalid_request",  # 422: body failed validation
    "unsupported_protocol_version",  # 400
    "unknown_session",  # 404
    "base_mismatch",  # 409: detail holds the cloud's SessionState
    "idempotency_conflict",  # 409: request_id reused with a different body
    "mode_mismatch",  # 400: token fields in a text session or the reverse
    "fingerprint_mismatch",  # 400: token mode with a tokenizer that is not the cloud's
    "token_out_of_vocab",  # 400
    "context_overflow",  # 400: more tokens than the model's context
    "out_of_range",  # 400: k, top_n, draft length, truncate length out of range
    "unsupported",  # 400: a combination the router does not implement (says which)
    "body_too_large",  # 413
    "unauthorized",  # 401
    "rate_limited",  # 429
    "engine_unavailable",  # 503: the pinned vLLM replica cannot be reached
    "engine_error",  # 502: the replica answered with an error
    "store_unavailable",  # 503: the shared session store (Redis) cannot be reached; nothing was changed
    "internal",  # 500
]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# ----------------------------------------------------------------------------------------------------
# Hashes and tokenizer fingerprint: both sides must compute these identically.


def token_prefix_hash(token_ids: Iterable[int]) -> str:
    """Hash of a committed token prefix: blake2b-128 over the ids as little-endian uint32, hex."""
    return TokenPrefixHasher().update(token_ids).hexdigest()


def text_prefix_hash(text: str) -> str:
    """Hash of a committed text prefix: blake2b-128 over its UTF-8 bytes, hex."""
    return TextPrefixHasher().update(text).hexdigest()


class TokenPrefixHasher:
    """Incremental :func:`token_prefix_hash` (feed appended ids; ``copy`` to branch)."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)

    def update(self, token_ids: Iterable[int]) -> TokenPrefixHasher:
        ids = list(token_ids)
        self._h.update(struct.pack(f"<{len(ids)}I", *ids))
        return self

    def copy(self) -> TokenPrefixHasher:
        other = TokenPrefixHasher.__new__(TokenPrefixHasher)
        other._h = self._h.copy()
        return other

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class TextPrefixHasher:
    """Incremental :func:`text_prefix_hash` (feed appended text; ``copy`` to branch)."""

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)

    def update(self, text: str) -> TextPrefixHasher:
        self._h.update(text.encode("utf-8"))
        return self

    def copy(self) -> TextPrefixHasher:
        other = TextPrefixHasher.__new__(TextPrefixHasher)
        other._h = self._h.copy()
        return other

    def hexdigest(self) -> str:
        return self._h.hexdigest()


#: Text whose encoding enters the fingerprint: words, digits, code, whitespace runs, non-Latin script.
FINGERPRINT_PROBE_TEXT: Final = (
    "The quick brown fox jumps over 13 lazy dogs; naïve café, déjà vu. "
    "def f(x):\n    return x**2  # 3.14159\n\n\t12345678 Ünïcödé "
    "中文字符 日本語 한국어 Русский עברית العربية 🙂"
)


def fingerprint_probe_ids(vocab_size: int) -> list[int]:
    """Token ids whose decoding enters the fingerprint: 64 ids spread over the vocabulary."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return sorted({(i * vocab_size) // 64 for i in range(64)} | {vocab_size - 1})


def tokenizer_fingerprint(vocab_size: int, probe_encoding: Sequence[int], probe_decoding: str) -> str:
    """Fingerprint of a tokenizer, computable from its outputs alone (no vocabulary file needed).

    ``vocab_size``: number of token ids (``len(tokenizer)`` in transformers).
    ``probe_encoding``: ids of :data:`FINGERPRINT_PROBE_TEXT` encoded *without* special tokens.
    ``probe_decoding``: ``decode(fingerprint_probe_ids(vocab_size))`` with the tokenizer's default
    decode options (special tokens kept).
    Returns ``"v1:<vocab_size>:<hex>"``.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(struct.pack(f"<I{len(probe_encoding)}I", vocab_size, *probe_encoding))
    h.update(probe_decoding.encode("utf-8"))
    return f"v1:{vocab_size}:{h.hexdigest()}"


# ----------------------------------------------------------------------------------------------------
# Shared value types.


class SamplingSettings(_Request):
    """Sampling of the cloud model for a session. ``temperature == 0`` is greedy."""

    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class PrefixRef(_Request):
    """A committed prefix: ``length`` units (tokens or code points, per mode) and their hash."""

    length: StrictInt = Field(ge=0)
    hash: Text = Field(min_length=1, max_length=64)


class TokenLogprob(_Response):
    token_id: int
    text: str
    logprob: float


class CloudToken(_Response):
    """One token the cloud produced, with its logprob and the ``top_n`` most likely alternatives."""

    token_id: int
    text: str
    logprob: float
    top_logprobs: list[TokenLogprob] = Field(default_factory=list)


class Usage(_Response):
    """Cloud cost of one request, from vLLM's usage numbers (summed over the engine calls it made).

    ``computed_tokens = prompt_tokens - cached_tokens`` is what the cloud really prefilled.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_tokens: int = 0
    completion_tokens: int = 0
    engine_calls: int = 0


class SessionState(_Response):
    """What the cloud holds for a session (also the ``detail.state`` of a 409 ``base_mismatch``).

    ``checkpoints`` are the committed prefix refs at every multiple of ``CHECKPOINT_INTERVAL`` (oldest
    first): the edge finds the longest one matching its own history, truncates there and re-syncs.
    ``token_ids`` / ``text`` are filled only when asked for (GET with ``include_content=true``).
    """

    session_id: str
    mode: SessionMode
    committed: PrefixRef
    checkpoints: list[PrefixRef] = Field(default_factory=list)
    cloud_tokens: int = Field(description="cloud token ids the session holds (== committed.length in token mode)")
    sampling: SamplingSettings
    tenant: str
    replica: int = Field(description="index of the vLLM replica the session is pinned to")
    max_model_len: int
    token_ids: list[int] | None = None
    text: str | None = None


# ----------------------------------------------------------------------------------------------------
# Requests and responses per endpoint.


class CloudInfo(_Response):
    """``GET /v1/info``: what the cloud serves and the limits it enforces."""

    protocol_version: int = PROTOCOL_VERSION
    model: str
    tokenizer_fingerprint: str
    vocab_size: int
    max_model_len: int
    max_k: int
    max_top_n: int
    max_draft: int
    max_body_bytes: int
    replicas: int


class _Delta(_Request):
    """Mixin for requests that append to the committed prefix (ids in token mode, text in text mode)."""

    new_token_ids: list[TokenId] = Field(default_factory=list)
    new_text: Text = ""

    @model_validator(mode="after")
    def _one_kind(self) -> _Delta:
        if self.new_token_ids and self.new_text:
            raise ValueError("give new_token_ids (token mode) or new_text (text mode), not both")
        return self


class CreateSessionRequest(_Request):
    """``POST /v1/sessions``. ``prefill`` asks the cloud to prefill the prompt now (warm prefix cache)."""

    protocol_version: int = PROTOCOL_VERSION
    request_id: RequestId
    mode: SessionMode = "token"
    tokenizer_fingerprint: Text = Field(
        min_length=1, max_length=128, description="the edge tokenizer's; must equal the cloud's in token mode"
    )
    prompt_token_ids: list[TokenId] = Field(default_factory=list)
    prompt_text: Text = ""
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    prefill: StrictBool = False

    @model_validator(mode="after")
    def _prompt_matches_mode(self) -> CreateSessionRequest:
        if self.mode == "token" and self.prompt_text:
            raise ValueError("mode 'token' takes prompt_token_ids, not prompt_text")
        if self.mode == "text" and self.prompt_token_ids:
            raise ValueError("mode 'text' takes prompt_text, not prompt_token_ids")
        return self


class SessionResponse(_Response):
    """Answer to create, get, truncate and sync: the session state, plus the cost if the cloud ran."""

    state: SessionState
    usage: Usage | None = None


class EscalateRequest(_Delta):
    """``POST /v1/sessions/{id}/escalate``: commit the delta, then ask the cloud for ``k`` tokens.

    ``proposal_token_ids`` / ``proposal_text``: what the edge would emit next; the answer says whether the
    cloud agreed. ``top_n``: alternatives returned per cloud token (0 = none).
    """

    request_id: RequestId
    base: PrefixRef
    k: StrictInt = Field(1, ge=1, le=MAX_K)
    top_n: StrictInt = Field(0, ge=0, le=MAX_TOP_N)
    proposal_token_ids: list[TokenId] = Field(default_factory=list)
    proposal_text: Text = ""


class EscalateResponse(_Response):
    """``tokens``: the cloud's continuation (not committed). ``agreed_prefix``: leading proposal units
    (tokens, or code points in text mode) the cloud reproduced; ``agreed`` is whether all were (None
    without a proposal). ``finish_reason`` is ``stop`` when the cloud hit end of sequence."""

    state: SessionState
    tokens: list[CloudToken]
    text: str
    agreed: bool | None
    agreed_prefix: int
    finish_reason: Literal["length", "stop"]
    usage: Usage


class VerifyRequest(_Delta):
    """``POST /v1/sessions/{id}/verify``: commit the delta, then verify the edge's draft.

    Greedy sessions accept the longest prefix equal to the cloud's greedy tokens. Sampling sessions use
    the standard speculative-sampling rule (accept d_i with probability min(1, p(d_i)/q(d_i)), at the
    first rejection sample the correction from max(0, p - q) normalised) and need
    ``draft_distributions``: for each draft position the edge's whole sampling distribution q, as token
    id -> probability over its support (at most ``MAX_DRAFT_SUPPORT`` ids, summing to 1, the drafted token
    included). A greedy drafter sends ``{d_i: 1.0}``; a sampling drafter truncates its distribution
    (top-k / top-p) and sends what it sampled from. The output then follows the cloud's own sampling
    distribution exactly, whatever q was.
    """

    request_id: RequestId
    base: PrefixRef
    draft_token_ids: list[TokenId] = Field(default_factory=list, max_length=MAX_DRAFT)
    draft_text: Text = ""
    draft_distributions: list[dict[TokenIdKey, float]] | None = Field(None, max_length=MAX_DRAFT)
    top_n: StrictInt = Field(0, ge=0, le=MAX_TOP_N)

    @model_validator(mode="after")
    def _draft(self) -> VerifyRequest:
        if bool(self.draft_token_ids) == bool(self.draft_text):
            raise ValueError("give exactly one of draft_token_ids (token mode) or draft_text (text mode)")
        if self.draft_distributions is not None:
            dists = self.draft_distributions
            if len(dists) != len(self.draft_token_ids):
                raise ValueError(
                    f"draft_distributions has {len(dists)} rows, draft_token_ids {len(self.draft_token_ids)}"
                )
            for i, (d, row) in enumerate(zip(self.draft_token_ids, dists, strict=True)):
                if len(row) > MAX_DRAFT_SUPPORT:
                    raise ValueError(f"draft_distributions[{i}] has {len(row)} ids; at most {MAX_DRAFT_SUPPORT}")
                if any(not (0.0 <= q <= 1.0) for q in row.values()):
                    raise ValueError(f"draft_distributions[{i}] holds a probability outside [0, 1]")
                if row.get(d, 0.0) <= 0.0:
                    raise ValueError(f"draft_distributions[{i}] gives the drafted token {d} no probability")
                total = sum(row.values())
                if abs(total - 1.0) > DRAFT_SUPPORT_TOLERANCE:
                    raise ValueError(f"draft_distributions[{i}] sums to {total:.6f}, not 1")
        return self


class VerifyResponse(_Response):
    """``accepted``: leading draft units accepted (tokens; code points in text mode). ``correction``:
    the cloud's token at the first rejected position, or the bonus token after a fully accepted draft
    (None only when the context is full or the cloud ended the sequence inside the draft). In text mode
    ``correction.text`` is the part of that cloud token after the accepted text. ``method``: ``greedy``
    or ``rejection`` (sampling). ``finish_reason`` is ``stop`` when the correction is the cloud's end of
    sequence (its text is empty: the answer ends after the accepted draft), else ``length``."""

    state: SessionState
    accepted: int
    correction: CloudToken | None
    accepted_text: str
    method: Literal["greedy", "rejection"]
    usage: Usage
    finish_reason: Literal["length", "stop"] = "length"


class SyncRequest(_Delta):
    """``POST /v1/sessions/{id}/sync``: commit the delta without asking anything; ``prefill`` warms the
    cloud's prefix cache with it now."""

    request_id: RequestId
    base: PrefixRef
    prefill: StrictBool = True


class TruncateRequest(_Request):
    """``POST /v1/sessions/{id}/truncate``: keep the first ``length`` committed units."""

    request_id: RequestId
    length: StrictInt = Field(ge=0)


class ErrorInfo(_Response):
    code: ErrorCode
    message: str
    state: SessionState | None = None


class ErrorResponse(_Response):
    """Body of every 4xx/5xx of the edge protocol: ``{"detail": {"code", "message", "state"?}}``."""

    detail: ErrorInfo
