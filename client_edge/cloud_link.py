"""``CloudLink``: one edge answer's session on the cloud, kept in step with what the edge committed.

The link sees the committed prefix as *units*: token ids in token mode, text in text mode (both are
sliceable sequences with a length). It remembers how many units the cloud holds (``synced``) and sends
only ``units[synced:]`` with each request, based on ``units[:synced]``. It repairs drift by itself:

- 409 ``base_mismatch``: the cloud holds something else (say a request timed out on the edge but was
  committed on the cloud). If the cloud's prefix is a prefix of the edge's, adopt its length; otherwise
  truncate the cloud to the longest checkpoint the edge shares (or to 0) and resend from there.
- 404 ``unknown_session`` (cloud restarted, session expired): open a new session holding everything.

Anything else propagates as the typed error; the session decides to keep its own tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from client_edge._base_client import RequestOptions, TrafficStats, new_request_id
from client_edge.client import EdgeClient
from client_edge.errors import (
    BadRequestError,
    CloudProtocolError,
    ConflictError,
    NotFoundError,
    TokenizerMismatchError,
)
from client_edge.protocol import (
    CloudToken,
    CreateSessionRequest,
    EscalateRequest,
    EscalateResponse,
    PrefixRef,
    SamplingSettings,
    SessionMode,
    SessionState,
    SyncRequest,
    TruncateRequest,
    Usage,
    VerifyRequest,
    VerifyResponse,
)
from client_edge.result import CloudUsage
from client_edge.wire import Units, make_wire

T = TypeVar("T")


class CloudAnswer(Protocol):
    """What the generation loop reads from an escalation answer."""

    tokens: list[CloudToken]
    text: str
    finish_reason: str  # "stop": the cloud ended the sequence after ``text`` (its EOS has no text)


class Link(Protocol):
    """What the generation loop needs from its cloud: ``CloudLink`` is the stateful protocol; an
    evaluation can plug in another (the stateless re-prefill baseline) through ``EdgeSession``."""

    session_id: str | None
    synced: int
    resyncs: int
    usage: CloudUsage

    def open(self, units: Units, prefill: bool = True) -> None: ...
    def escalate(self, units: Units, k: int, proposal: Units, top_n: int = 0) -> CloudAnswer: ...
    def verify(self, units: Units, draft: Units) -> VerifyResponse: ...
    def sync(self, units: Units, prefill: bool = True) -> None: ...
    def traffic(self) -> TrafficStats: ...
    def close(self) -> None: ...


LinkFactory = Callable[[SessionMode, str, RequestOptions], Link]


class CloudLink:
    def __init__(
        self,
        client: EdgeClient,
        mode: SessionMode,
        tokenizer_fingerprint: str,
        sampling: SamplingSettings,
        options: RequestOptions,
    ) -> None:
        self.client = client
        self.mode = mode
        self.wire = make_wire(mode)  # ids or text on the wire, and the incremental prefix hashes
        self.fingerprint = tokenizer_fingerprint
        self.sampling = sampling
        self.options = options
        self.session_id: str | None = None
        self.synced = 0
        self.resyncs = 0
        self.usage = CloudUsage()

    def traffic(self) -> TrafficStats:
        return self.client.stats.snapshot()

    # --- helpers ---------------------------------------------------------------------------------
    def _base(self, units: Units) -> PrefixRef:
        return PrefixRef(length=self.synced, hash=self.wire.prefix_hash(units, self.synced))

    def _delta(self, units: Units) -> dict[str, object]:
        return self.wire.delta(units[self.synced :])

    def _add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        u = self.usage
        u.requests += 1
        u.prompt_tokens += usage.prompt_tokens
        u.cached_tokens += usage.cached_tokens
        u.computed_tokens += usage.computed_tokens
        u.completion_tokens += usage.completion_tokens
        u.engine_calls += usage.engine_calls

    def _adopt(self, state: SessionState, units: Units, length: int | None = None) -> None:
        """After a success the cloud holds exactly ``units[:length]`` (all of them by default); check it
        says so before relying on it: a wrong length would name a base the edge cannot hash."""
        n = len(units) if length is None else length
        if state.committed.length != n or state.committed.hash != self.wire.prefix_hash(units, n):
            raise CloudProtocolError(
                f"cloud committed {state.committed.length} units after a request for {n}: "
                "router and edge disagree on the protocol"
            )
        self.synced = n

    # --- session lifetime ------------------------------------------------------------------------
    def open(self, units: Units, prefill: bool = True) -> None:
        body = CreateSessionRequest(
            request_id=new_request_id(),
            mode=self.mode,
            tokenizer_fingerprint=self.fingerprint,
            sampling=self.sampling,
            prefill=prefill,
            **self.wire.prompt(units),  # type: ignore[arg-type]
        )
        try:
            resp = self.client.create_session(body, self.options)
        except BadRequestError as exc:
            if exc.code == "fingerprint_mismatch":  # a configuration error, not a cloud failure: raise it
                raise TokenizerMismatchError(
                    f"token mode needs the cloud's tokenizer and the edge's ({self.fingerprint}) differs: "
                    f"{exc.message}; run with SessionConfig(mode='text') or a local model that shares the "
                    "cloud's tokenizer"
                ) from exc
            raise
        self._add_usage(resp.usage)
        self.session_id = resp.state.session_id
        self.synced = 0  # until the cloud's state checks out; a 409 then tells what it holds
        self._adopt(resp.state, units)

    def close(self) -> None:
        """Delete this answer's cloud session (its transcript on the router); typed errors propagate."""
        if self.session_id is not None:
            self.client.delete_session(self.session_id, self.options)
            self.session_id = None

    # --- requests --------------------------------------------------------------------------------
    def escalate(self, units: Units, k: int, proposal: Units, top_n: int = 0) -> EscalateResponse:
        def call(sid: str) -> EscalateResponse:
            prop = self.wire.proposal(proposal)
            body = EscalateRequest(
                request_id=new_request_id(),
                base=self._base(units),
                k=k,
                top_n=top_n,
                **self._delta(units),
                **prop,  # type: ignore[arg-type]
            )
            return self.client.escalate(sid, body, self.options)

        resp = self._with_repair(units, call)
        self._add_usage(resp.usage)
        self._adopt(resp.state, units)
        if len(resp.tokens) > k:  # the edge would commit tokens nobody asked for (a duplicated answer)
            raise CloudProtocolError(f"cloud answered {len(resp.tokens)} tokens to an escalation for k={k}")
        return resp

    def verify(self, units: Units, draft: Units) -> VerifyResponse:
        def call(sid: str) -> VerifyResponse:
            d = self.wire.draft(draft, self.sampling)
            body = VerifyRequest(
                request_id=new_request_id(), base=self._base(units), **self._delta(units), **d
            )  # type: ignore[arg-type]
            return self.client.verify(sid, body, self.options)

        resp = self._with_repair(units, call)
        self._add_usage(resp.usage)
        self._adopt(resp.state, units)
        return resp

    def sync(self, units: Units, prefill: bool = True) -> None:
        if self.session_id is not None and self.synced == len(units):
            return

        def call(sid: str) -> object:
            body = SyncRequest(
                request_id=new_request_id(), base=self._base(units), prefill=prefill, **self._delta(units)
            )  # type: ignore[arg-type]
            return self.client.sync(sid, body, self.options)

        resp = self._with_repair(units, call)
        self._add_usage(getattr(resp, "usage", None))
        self._adopt(resp.state, units)  # type: ignore[attr-defined]

    def _with_repair(self, units: Units, call: Callable[[str], T]) -> T:
        if self.session_id is None:
            self.open(units)
        for attempt in range(3):
            try:
                return call(self.session_id)  # type: ignore[arg-type]
            except ConflictError as exc:
                if attempt == 2 or exc.code != "base_mismatch" or exc.info is None or exc.info.state is None:
                    raise
                self.resyncs += 1
                self._reconcile(exc.info.state, units)
            except NotFoundError:
                if attempt == 2:
                    raise
                self.resyncs += 1
                self.session_id = None
                self.open(units)
        raise AssertionError("unreachable")

    def _reconcile(self, state: SessionState, units: Units) -> None:
        """Make ``synced`` the length of the longest prefix the cloud and the edge share."""
        c = state.committed
        if c.length <= len(units) and self.wire.prefix_hash(units, c.length) == c.hash:
            self.synced = c.length
            return
        keep = 0
        for cp in reversed(state.checkpoints):
            if cp.length <= len(units) and self.wire.prefix_hash(units, cp.length) == cp.hash:
                keep = cp.length
                break
        body = TruncateRequest(request_id=new_request_id(), length=keep)
        resp = self.client.truncate(state.session_id, body, self.options)
        self._adopt(resp.state, units, keep)
